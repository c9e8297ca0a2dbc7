"""The ModeResolver's header rules as one table: request headers (and the bucket default, the
connection, the stored object or upload) -> the mode, or the exact S3 error (status, code, message).

Each row is a request shape the e2e SSE suites send through boto3 and awscli (tests/e2e/test_sse_*.py:
errors, matrix, copy, multipart, kms, bucket default, key first), decided here without a socket.
Each operation does what the object store does with the resolver (store/objects.py,
store/multipart.py), up to and including the key step, so the rows that only a key can decide (a
wrong SSE-C key, a disabled KMS key) are rows too:

    PUT, COPY, CREATE              for_write(bucket default), then seal            (the target of a copy)
    GET, HEAD                      reject_sse_header, for_stored, unseal           (store.open + read)
    COPY-SOURCE                    for_stored(copy_source=True), unseal            (store.open(copy_source))
    UPLOAD-PART, UPLOAD-PART-COPY  reject_sse_header, for_upload, unseal           (MultipartUploads.open)
    COMPLETE                       for_complete, unseal when a key came            (MultipartUploads.complete)

Errors go through errors.to_s3_error, as the front door renders them. Every row says why it is there.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from s3proxy import errors
from s3proxy.format.envelope import KEY_MODE
from s3proxy.modes.base import ObjectRef
from s3proxy.modes.resolve import BucketEncryption
from tests.twins import ALICE, World, caller_of, make_call, ssec_headers

KEY = bytes(range(32))  # the SSE-C key the stored object and upload were written with
OTHER = bytes(range(100, 132))  # another well-formed SSE-C key
REF = ObjectRef("matrix", "object")
SSE = "x-amz-server-side-encryption"
KMS_ID = "x-amz-server-side-encryption-aws-kms-key-id"
CONTEXT = "x-amz-server-side-encryption-context"
BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
SSEC = "x-amz-server-side-encryption-customer-"
CPSRC = "x-amz-copy-source-server-side-encryption-customer-"

# AWS's messages, exactly (reference s3-sse-and-kms.md §1.2)
MISSING = ("The object was stored using a form of Server Side Encryption. "
           "The correct parameters must be provided to retrieve the object.")
WRONG = "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key."
NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
BAD_MD5 = "The calculated MD5 hash of the key did not match the hash that was provided."
BAD_KEY = "The secret key was invalid for the specified algorithm."
NO_ALGORITHM = "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
NO_KEY = "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
NO_MD5 = ("Requests specifying Server Side Encryption with Customer provided keys "
          "must provide the client calculated MD5 of the secret key.")
ALGORITHM = "The Encryption request you specified is not valid. Supported value: AES256."
INSECURE = "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
INCOMPATIBLE = "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
KMS_NEEDS_SSE = "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
UNSUPPORTED = "The encryption method specified is not supported"
DSSE = "Dual-layer server-side encryption (aws:kms:dsse) is not supported by s3proxy"
BAD_CONTEXT = ("The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string "
               "holding JSON which represents a string-string map")
AWS_CONTEXT = "Encryption context keys cannot start with 'aws:'"
BAD_BUCKET_KEY = "Invalid value for header x-amz-server-side-encryption-bucket-key-enabled"
BLOCKED = "Requests specifying Server Side Encryption with Customer provided keys are blocked for this bucket."
INITIATE = ("The multipart upload initiate requested encryption. "
            "Subsequent part requests must include the appropriate encryption parameters.")
MISMATCH = "The provided encryption parameters did not match the ones used originally."


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ssec(raw: bytes = KEY, prefix: str = SSEC, **replace: str | None) -> dict[str, str]:
    return ssec_headers(raw, prefix, **replace)


def context(value: object) -> str:
    return b64(json.dumps(value).encode())


CTX = context({"project": "matrix"})


@dataclass(frozen=True)
class Mode:
    """What a row resolves to: the mode's name (None: Complete without a key, which the upload's own
    record decides) and, for SSE-KMS, which key, whether a bucket key, and the context echoed."""

    name: str | None
    key: str | None = None  # "k1" (the test key), "managed" (alias/aws/s3)
    bucket_key: bool = False
    context: str | None = None


@dataclass(frozen=True)
class Error:
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class Row:
    id: str
    op: str
    headers: Mapping[str, str]
    expect: Mode | Error
    stored: str | None = None  # the stored object's / upload's mode: "AES256", "aws:kms", "bucket-key", "SSE-C", "disabled"
    default: BucketEncryption = field(default_factory=BucketEncryption)  # the bucket's PutBucketEncryption
    secure: bool = False  # TLS
    loopback: bool = True  # the client is on this host
    ssec_over_http: str = "loopback"  # the proxy's setting


AES256, KMS_K1, SSE_C = Mode("AES256"), Mode("aws:kms", key="k1"), Mode("SSE-C")
KMS_DEFAULT = BucketEncryption("aws:kms", "k1")
KMS_DEFAULT_BUCKET_KEY = BucketEncryption("aws:kms", "k1", bucket_key=True)
BLOCKS_SSEC = BucketEncryption(blocked=("SSE-C",))


def InvalidArgument(message: str) -> Error:  # noqa: N802 - named after the S3 code it stands for
    return Error(400, "InvalidArgument", message)


def InvalidRequest(message: str) -> Error:  # noqa: N802
    return Error(400, "InvalidRequest", message)


ROWS: list[Row] = [
    # --- writes: PUT, CopyObject (the target) and CreateMultipartUpload resolve the same way ----------
    Row("put-no-headers", "PUT", {}, AES256),  # S3 encrypts every object with SSE-S3 since 2023-01-05 (§1.4)
    Row("create-no-headers", "CREATE", {}, AES256),  # ... multipart uploads too
    Row("copy-no-headers", "COPY", {}, AES256),  # a copy target gets the default, not the source's mode (§1.7)
    Row("put-aes256", "PUT", {SSE: "AES256"}, AES256),  # SSE-S3 asked for
    Row("put-kms-managed", "PUT", {SSE: "aws:kms"}, Mode("aws:kms", key="managed")),  # no key id: alias/aws/s3 (§1.1)
    Row("put-kms-key-arn", "PUT", {SSE: "aws:kms", KMS_ID: "k1"}, KMS_K1),  # a key named by ARN, echoed as ARN
    Row("put-kms-alias", "PUT", {SSE: "aws:kms", KMS_ID: "alias/matrix"}, KMS_K1),  # an alias resolves to its key's ARN
    Row("create-kms-key", "CREATE", {SSE: "aws:kms", KMS_ID: "k1"}, KMS_K1),  # Create takes the same headers
    Row("copy-kms-key", "COPY", {SSE: "aws:kms", KMS_ID: "k1"}, KMS_K1),  # as does a copy's target
    Row("put-context-not-json", "PUT", {SSE: "aws:kms", CONTEXT: b64(b"project=matrix")}, InvalidArgument(BAD_CONTEXT)),
    Row("put-context-not-strings", "PUT", {SSE: "aws:kms", CONTEXT: context({"n": 1})}, InvalidArgument(BAD_CONTEXT)),  # string-string only
    Row("put-context-a-list", "PUT", {SSE: "aws:kms", CONTEXT: context(["a"])}, InvalidArgument(BAD_CONTEXT)),  # a map, not a list
    Row("put-context-aws-prefix", "PUT", {SSE: "aws:kms", CONTEXT: context({"aws:s3:arn": "x"})},
        InvalidArgument(AWS_CONTEXT)),  # aws:s3:arn is S3's own: a client may not forge it
    Row("put-bucket-key", "PUT", {SSE: "aws:kms", KMS_ID: "k1", BUCKET_KEY: "true"}, Mode("aws:kms", key="k1", bucket_key=True)),
    Row("put-bucket-key-bad-value", "PUT", {SSE: "aws:kms", BUCKET_KEY: "yes"}, InvalidArgument(BAD_BUCKET_KEY)),  # fail closed
    Row("put-kms-key-with-aes256", "PUT", {SSE: "AES256", KMS_ID: "k1"}, InvalidArgument(KMS_NEEDS_SSE)),  # MinIO mirrors AWS
    Row("put-kms-key-without-sse", "PUT", {KMS_ID: "k1"}, InvalidArgument(KMS_NEEDS_SSE)),  # a key id alone is not SSE-KMS
    Row("put-context-without-sse", "PUT", {CONTEXT: CTX}, InvalidArgument(KMS_NEEDS_SSE)),  # nor is a context alone
    Row("put-unknown-sse", "PUT", {SSE: "AES512"}, InvalidArgument(UNSUPPORTED)),  # outside the enum
    Row("put-sse-lower-case", "PUT", {SSE: "aes256"}, InvalidArgument(UNSUPPORTED)),  # the enum is case-sensitive
    Row("put-dsse", "PUT", {SSE: "aws:kms:dsse"}, Error(501, "NotImplemented", DSSE)),  # a documented non-goal
    Row("create-dsse", "CREATE", {SSE: "aws:kms:dsse"}, Error(501, "NotImplemented", DSSE)),
    # --- writes with SSE-C ------------------------------------------------------------------------------
    Row("put-ssec", "PUT", ssec(), SSE_C),  # plain HTTP from loopback: allowed by ssec_over_http=loopback
    Row("create-ssec", "CREATE", ssec(), SSE_C),
    Row("copy-ssec-target", "COPY", ssec(), SSE_C),  # a copy encrypted under a new customer key (key rotation, §1.7)
    Row("put-ssec-and-sse-s3", "PUT", {**ssec(), SSE: "AES256"}, InvalidArgument(INCOMPATIBLE)),
    Row("put-ssec-and-sse-kms", "PUT", {**ssec(), SSE: "aws:kms"}, InvalidArgument(INCOMPATIBLE)),
    Row("put-ssec-and-kms-key", "PUT", {**ssec(), KMS_ID: "k1"}, InvalidArgument(INCOMPATIBLE)),  # no SSE header, still two modes
    Row("put-ssec-and-context", "PUT", {**ssec(), CONTEXT: CTX}, InvalidArgument(INCOMPATIBLE)),
    Row("put-ssec-bad-md5", "PUT", ssec(key_md5=b64(hashlib.md5(OTHER).digest())), InvalidArgument(BAD_MD5)),
    Row("put-ssec-md5-not-base64", "PUT", ssec(key_md5="not base64"), InvalidArgument(BAD_MD5)),
    Row("put-ssec-no-md5", "PUT", ssec(key_md5=None), InvalidArgument(NO_MD5)),  # boto3 computes it; raw clients may not
    Row("put-ssec-short-key", "PUT", ssec(b"k" * 16), InvalidArgument(BAD_KEY)),  # 128 bits is not AES-256
    Row("put-ssec-long-key", "PUT", ssec(b"k" * 33), InvalidArgument(BAD_KEY)),
    Row("put-ssec-key-not-base64", "PUT", ssec(key="*" * 44), InvalidArgument(BAD_KEY)),
    Row("put-ssec-key-no-algorithm", "PUT", ssec(algorithm=None), InvalidArgument(NO_ALGORITHM)),
    Row("put-ssec-algorithm-no-key", "PUT", ssec(key=None, key_md5=None), InvalidArgument(NO_KEY)),
    Row("put-ssec-md5-alone", "PUT", ssec(algorithm=None, key=None), InvalidArgument(NO_ALGORITHM)),  # any one header is SSE-C
    Row("put-ssec-aes128", "PUT", ssec(algorithm="AES128"), Error(400, "InvalidEncryptionAlgorithmError", ALGORITHM)),
    Row("put-ssec-algorithm-checked-first", "PUT", ssec(b"short", algorithm="AES128"),
        Error(400, "InvalidEncryptionAlgorithmError", ALGORITHM)),  # AWS's order: algorithm, key, MD5
    # --- SSE-C and the connection -------------------------------------------------------------------------
    Row("put-ssec-http-remote", "PUT", ssec(), InvalidRequest(INSECURE), loopback=False),  # the key would cross a network in clear
    Row("put-ssec-http-loopback-never", "PUT", ssec(), InvalidRequest(INSECURE), ssec_over_http="never"),  # as AWS: never over HTTP
    Row("put-ssec-http-remote-always", "PUT", ssec(), SSE_C, loopback=False, ssec_over_http="always"),  # the operator's choice
    Row("put-ssec-https-remote-never", "PUT", ssec(), SSE_C, secure=True, loopback=False, ssec_over_http="never"),  # TLS is always fine
    Row("put-ssec-http-remote-malformed", "PUT", ssec(b"short"), InvalidArgument(BAD_KEY), loopback=False),  # the key is parsed first
    Row("get-ssec-http-remote", "GET", ssec(), InvalidRequest(INSECURE), stored="SSE-C", loopback=False),  # reads too
    Row("copy-source-ssec-http-remote", "COPY-SOURCE", ssec(prefix=CPSRC), InvalidRequest(INSECURE), stored="SSE-C",
        loopback=False),  # and the copy-source key
    Row("put-no-ssec-http-remote-never", "PUT", {}, AES256, loopback=False, ssec_over_http="never"),  # only SSE-C cares
    # --- the bucket default --------------------------------------------------------------------------------
    Row("put-default-kms", "PUT", {}, KMS_K1, default=KMS_DEFAULT),  # no header: the bucket's key
    Row("create-default-kms", "CREATE", {}, KMS_K1, default=KMS_DEFAULT),
    Row("copy-default-kms", "COPY", {}, KMS_K1, default=KMS_DEFAULT),  # a copy without SSE headers gets the default (§1.7)
    Row("put-default-kms-managed", "PUT", {}, Mode("aws:kms", key="managed"), default=BucketEncryption("aws:kms")),
    Row("put-default-bucket-key", "PUT", {}, Mode("aws:kms", key="k1", bucket_key=True), default=KMS_DEFAULT_BUCKET_KEY),
    Row("put-default-bucket-key-header-false", "PUT", {SSE: "aws:kms", KMS_ID: "k1", BUCKET_KEY: "false"}, KMS_K1,
        default=KMS_DEFAULT_BUCKET_KEY),  # the header beats the default's bucket key
    Row("put-default-bucket-key-explicit-kms", "PUT", {SSE: "aws:kms", KMS_ID: "k1"}, Mode("aws:kms", key="k1", bucket_key=True),
        default=KMS_DEFAULT_BUCKET_KEY),  # an explicit SSE-KMS inherits the bucket's BucketKeyEnabled
    Row("put-sse-s3-default-bucket-key-explicit-kms", "PUT", {SSE: "aws:kms", KMS_ID: "k1"}, KMS_K1,
        default=BucketEncryption("AES256", bucket_key=True)),  # bucket keys belong to an SSE-KMS default only
    Row("put-explicit-beats-default", "PUT", {SSE: "AES256"}, AES256, default=KMS_DEFAULT),  # the header wins (§1.4)
    Row("put-explicit-key-beats-default", "PUT", {SSE: "aws:kms"}, Mode("aws:kms", key="managed"),
        default=KMS_DEFAULT),  # aws:kms without a key id is alias/aws/s3, not the bucket's key
    Row("put-ssec-beats-default", "PUT", ssec(), SSE_C, default=KMS_DEFAULT),  # a customer key is explicit too
    Row("put-blocked-ssec", "PUT", ssec(), Error(403, "AccessDenied", BLOCKED), default=BLOCKS_SSEC),  # BlockedEncryptionTypes
    Row("create-blocked-ssec", "CREATE", ssec(), Error(403, "AccessDenied", BLOCKED), default=BLOCKS_SSEC),
    Row("copy-blocked-ssec", "COPY", ssec(), Error(403, "AccessDenied", BLOCKED), default=BLOCKS_SSEC),
    Row("put-blocked-ssec-malformed", "PUT", ssec(b"short"), Error(403, "AccessDenied", BLOCKED),
        default=BLOCKS_SSEC),  # blocked is said before the key is looked at
    Row("put-blocked-ssec-algorithm-only", "PUT", ssec(key=None, key_md5=None), Error(403, "AccessDenied", BLOCKED),
        default=BLOCKS_SSEC),  # any SSE-C header is an SSE-C request
    Row("put-blocked-ssec-insecure", "PUT", ssec(), Error(403, "AccessDenied", BLOCKED), default=BLOCKS_SSEC,
        loopback=False),  # before the connection check too
    Row("put-blocked-ssec-no-headers", "PUT", {}, AES256, default=BLOCKS_SSEC),  # other writes are not blocked
    Row("copy-blocked-copy-source-key", "COPY", ssec(prefix=CPSRC), AES256, default=BLOCKS_SSEC),  # an SSE-C source may be copied out
    Row("get-blocked-still-reads", "GET", ssec(), SSE_C, stored="SSE-C", default=BLOCKS_SSEC),  # reads are never blocked
    # --- the KMS key's state decides at the key step ---------------------------------------------------------
    Row("put-unknown-key-id", "PUT", {SSE: "aws:kms", KMS_ID: "00000000-0000-0000-0000-000000000001"},
        Error(400, "KMS.NotFoundException",
              "Key 'arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000001' does not exist")),
    Row("put-not-a-key-id", "PUT", {SSE: "aws:kms", KMS_ID: "fake-key-id"},
        Error(400, "KMS.NotFoundException", "Invalid keyId fake-key-id")),  # AWS's own message for it [L]
    Row("create-unknown-alias", "CREATE", {SSE: "aws:kms", KMS_ID: "alias/none"},
        Error(400, "KMS.NotFoundException", "Alias arn:aws:kms:us-east-1:000000000000:alias/none is not found.")),
    Row("put-disabled-key", "PUT", {SSE: "aws:kms", KMS_ID: "disabled"},
        Error(400, "KMS.DisabledException", "{disabled} is disabled.")),
    Row("put-pending-deletion-key", "PUT", {SSE: "aws:kms", KMS_ID: "pending"},
        Error(400, "KMS.KMSInvalidStateException", "{pending} is pending deletion.")),
    Row("put-default-disabled-key", "PUT", {}, Error(400, "KMS.DisabledException", "{disabled} is disabled."),
        default=BucketEncryption("aws:kms", "disabled")),  # a default's key is checked like a header's
    Row("get-disabled-key", "GET", {}, Error(400, "KMS.DisabledException", "{disabled} is disabled."), stored="disabled"),
    # --- reads: GET and HEAD ---------------------------------------------------------------------------------
    Row("get-sse-s3", "GET", {}, AES256, stored="AES256"),
    Row("get-sse-kms", "GET", {}, KMS_K1, stored="aws:kms"),  # the stored key, whoever asks (policies decide)
    Row("get-bucket-key", "GET", {}, Mode("aws:kms", key="k1", bucket_key=True), stored="bucket-key"),
    Row("get-ssec", "GET", ssec(), SSE_C, stored="SSE-C"),
    Row("head-ssec", "HEAD", ssec(), SSE_C, stored="SSE-C"),
    Row("get-ssec-no-key", "GET", {}, InvalidRequest(MISSING), stored="SSE-C"),  # [L] 400, not 403
    Row("head-ssec-no-key", "HEAD", {}, InvalidRequest(MISSING), stored="SSE-C"),  # HEAD: the same status, no body
    Row("get-ssec-wrong-key", "GET", ssec(OTHER), Error(403, "AccessDenied", WRONG), stored="SSE-C"),  # [L] 403
    Row("head-ssec-wrong-key", "HEAD", ssec(OTHER), Error(403, "AccessDenied", WRONG), stored="SSE-C"),
    Row("get-ssec-copy-source-key-only", "GET", ssec(prefix=CPSRC), InvalidRequest(MISSING),
        stored="SSE-C"),  # a GET reads the customer headers, never the copy-source ones
    Row("get-ssec-bad-md5", "GET", ssec(key_md5=b64(hashlib.md5(OTHER).digest())), InvalidArgument(BAD_MD5), stored="SSE-C"),
    Row("get-ssec-long-key", "GET", ssec(b"k" * 33), InvalidArgument(BAD_KEY), stored="SSE-C"),
    Row("get-ssec-algorithm-no-key", "GET", ssec(key=None, key_md5=None), InvalidArgument(NO_KEY), stored="SSE-C"),
    Row("get-ssec-aes128", "GET", ssec(algorithm="AES128"), Error(400, "InvalidEncryptionAlgorithmError", ALGORITHM),
        stored="SSE-C"),
    Row("get-ssec-malformed-on-sse-s3", "GET", ssec(b"short"), InvalidArgument(BAD_KEY),
        stored="AES256"),  # a malformed key is refused whatever the object is
    Row("get-key-on-sse-s3", "GET", ssec(), InvalidRequest(NOT_APPLICABLE), stored="AES256"),  # boto3 #982, minio #7332
    Row("head-key-on-sse-kms", "HEAD", ssec(), InvalidRequest(NOT_APPLICABLE), stored="aws:kms"),
    Row("get-sse-header", "GET", {SSE: "AES256"},
        InvalidArgument("x-amz-server-side-encryption header is not supported for this operation."), stored="AES256"),
    Row("head-kms-key-header", "HEAD", {KMS_ID: "k1"},
        InvalidArgument(f"{KMS_ID} header is not supported for this operation."), stored="aws:kms"),
    Row("get-context-header", "GET", {CONTEXT: CTX},
        InvalidArgument(f"{CONTEXT} header is not supported for this operation."), stored="aws:kms"),
    Row("get-sse-header-before-key", "GET", {SSE: "AES256", **ssec(OTHER)},
        InvalidArgument("x-amz-server-side-encryption header is not supported for this operation."),
        stored="SSE-C"),  # the header is refused before the key is tried
    Row("copy-source-ssec", "COPY-SOURCE", ssec(prefix=CPSRC), SSE_C, stored="SSE-C"),
    Row("copy-source-ssec-no-key", "COPY-SOURCE", {}, InvalidRequest(MISSING), stored="SSE-C"),
    Row("copy-source-ssec-wrong-key", "COPY-SOURCE", ssec(OTHER, CPSRC), Error(403, "AccessDenied", WRONG), stored="SSE-C"),
    Row("copy-source-ssec-target-key-only", "COPY-SOURCE", ssec(), InvalidRequest(MISSING),
        stored="SSE-C"),  # the target's key does not open the source
    Row("copy-source-bad-md5", "COPY-SOURCE", ssec(prefix=CPSRC, key_md5=b64(hashlib.md5(OTHER).digest())),
        InvalidArgument(BAD_MD5), stored="SSE-C"),
    Row("copy-source-aes128", "COPY-SOURCE", ssec(prefix=CPSRC, algorithm="AES128"),
        Error(400, "InvalidEncryptionAlgorithmError", ALGORITHM), stored="SSE-C"),
    Row("copy-source-key-on-sse-s3", "COPY-SOURCE", ssec(prefix=CPSRC), InvalidRequest(NOT_APPLICABLE), stored="AES256"),
    Row("copy-source-with-target-sse-header", "COPY-SOURCE", {SSE: "aws:kms"}, KMS_K1,
        stored="aws:kms"),  # a copy's SSE headers name the target: the source opens as stored
    # --- UploadPart and UploadPartCopy: the upload's own mode --------------------------------------------------
    Row("part-sse-s3", "UPLOAD-PART", {}, AES256, stored="AES256"),
    Row("part-sse-kms", "UPLOAD-PART", {}, KMS_K1, stored="aws:kms"),
    Row("part-ssec", "UPLOAD-PART", ssec(), SSE_C, stored="SSE-C"),
    Row("part-copy-ssec", "UPLOAD-PART-COPY", ssec(), SSE_C, stored="SSE-C"),
    Row("part-ssec-no-key", "UPLOAD-PART", {}, InvalidRequest(INITIATE), stored="SSE-C"),  # §1.2 [L]
    Row("part-copy-ssec-no-key", "UPLOAD-PART-COPY", ssec(prefix=CPSRC), InvalidRequest(INITIATE),
        stored="SSE-C"),  # the source's key is not the upload's
    Row("part-ssec-other-key", "UPLOAD-PART", ssec(OTHER), InvalidRequest(MISMATCH), stored="SSE-C"),  # 400, not 403: [L]
    Row("part-copy-ssec-other-key", "UPLOAD-PART-COPY", ssec(OTHER), InvalidRequest(MISMATCH), stored="SSE-C"),
    Row("part-key-on-sse-s3-upload", "UPLOAD-PART", ssec(), InvalidRequest(INITIATE), stored="AES256"),  # "(or the reverse)"
    Row("part-ssec-bad-md5", "UPLOAD-PART", ssec(key_md5=b64(hashlib.md5(OTHER).digest())), InvalidArgument(BAD_MD5),
        stored="SSE-C"),
    Row("part-sse-header", "UPLOAD-PART", {SSE: "AES256"},
        InvalidArgument("x-amz-server-side-encryption header is not supported for this operation."), stored="AES256"),  # boto3 #3943
    Row("part-copy-kms-key-header", "UPLOAD-PART-COPY", {KMS_ID: "k1"},
        InvalidArgument(f"{KMS_ID} header is not supported for this operation."), stored="aws:kms"),
    Row("part-ssec-http-remote", "UPLOAD-PART", ssec(), InvalidRequest(INSECURE), stored="SSE-C", loopback=False),
    # --- CompleteMultipartUpload: the key is optional, but must be the upload's when sent ----------------------
    Row("complete-ssec-without-key", "COMPLETE", {}, Mode(None), stored="SSE-C"),  # older SDKs send none
    Row("complete-ssec-with-key", "COMPLETE", ssec(), SSE_C, stored="SSE-C"),  # newer SDKs send it
    Row("complete-ssec-other-key", "COMPLETE", ssec(OTHER), InvalidRequest(MISMATCH), stored="SSE-C"),
    Row("complete-key-on-sse-s3-upload", "COMPLETE", ssec(), InvalidRequest(NOT_APPLICABLE), stored="AES256"),
    Row("complete-sse-kms", "COMPLETE", {}, Mode(None), stored="aws:kms"),
    Row("complete-ssec-malformed", "COMPLETE", ssec(b"short"), InvalidArgument(BAD_KEY), stored="SSE-C"),
]


@dataclass
class Stage:
    """One key service and one object / upload record per stored mode, sealed once for the module."""

    world: World
    keys: dict[str, str]  # "k1", "disabled", "pending", "managed" -> key ARN
    fields: dict[str, Mapping[str, str]]  # stored mode -> envelope fields


@pytest.fixture(scope="module")
def stage() -> Stage:
    world = World.build()
    alice = caller_of(ALICE)
    keys = {name: world.create_key() for name in ("k1", "disabled", "pending")}
    world.kms.create_alias(alice, "alias/matrix", keys["k1"])

    async def seal(headers: Mapping[str, str], default: BucketEncryption = BucketEncryption()) -> Mapping[str, str]:
        mode = world.services.modes(make_call(REF.bucket, REF.key, headers=headers)).for_write(default)
        return dict((await mode.seal(REF)).fields)

    async def seal_all() -> dict[str, Mapping[str, str]]:
        return {
            "AES256": await seal({SSE: "AES256"}),
            "aws:kms": await seal({SSE: "aws:kms", KMS_ID: keys["k1"]}),
            "bucket-key": await seal({SSE: "aws:kms", KMS_ID: keys["k1"], BUCKET_KEY: "true"}),
            "SSE-C": await seal(ssec()),
            "disabled": await seal({SSE: "aws:kms", KMS_ID: keys["disabled"]}),
        }

    fields = asyncio.run(seal_all())
    world.kms.disable_key(alice, keys["disabled"])
    world.kms.schedule_key_deletion(alice, keys["pending"], 7)
    keys["managed"] = world.kms.aws_managed_key(alice)
    return Stage(world, keys, fields)


def _named(stage: Stage, value: str) -> str:
    """A key named in a row ("k1", "disabled", ...) as the request names it: the key's ARN."""
    return stage.keys.get(value, value)


async def resolve(stage: Stage, row: Row) -> Mode:
    """What the object store does with the resolver for `row.op`, up to the key step (module docstring)."""
    headers = {k: (_named(stage, v) if k == KMS_ID else v) for k, v in row.headers.items()}
    default = dataclasses.replace(row.default, kms_key_id=_named(stage, row.default.kms_key_id or "") or None)
    services = dataclasses.replace(stage.world.services, ssec_over_http=row.ssec_over_http)
    call = make_call(REF.bucket, REF.key, headers=headers, secure=row.secure, loopback=row.loopback)
    modes = services.modes(call)
    stored = stage.fields[row.stored] if row.stored else {}
    if row.op in ("PUT", "COPY", "CREATE"):
        mode = modes.for_write(default)
        sealed = await mode.seal(REF)
        return _observed(mode.name, mode.response_headers(sealed.fields, on_write=True), stage)
    if row.op in ("GET", "HEAD", "UPLOAD-PART", "UPLOAD-PART-COPY"):
        modes.reject_sse_header()
    if row.op in ("GET", "HEAD", "COPY-SOURCE"):
        mode = modes.for_stored(stored, copy_source=row.op == "COPY-SOURCE")
    elif row.op in ("UPLOAD-PART", "UPLOAD-PART-COPY"):
        mode = modes.for_upload(stored)
    else:
        assert row.op == "COMPLETE", row.op
        found = modes.for_complete(stored)
        if found is None:
            return Mode(None)
        mode = found
    await mode.unseal(REF, stored)
    return _observed(mode.name, mode.response_headers(stored, on_write=False), stage)


def _observed(name: str, echo: Mapping[str, str], stage: Stage) -> Mode:
    """The mode as its response headers show it, in the table's terms."""
    if name == "SSE-C":
        assert echo == {f"{SSEC}algorithm": "AES256", f"{SSEC}key-MD5": b64(hashlib.md5(KEY).digest())}, echo
        return Mode(name)
    if name == "AES256":
        assert echo == {SSE: "AES256"}, echo
        return Mode(name)
    arns = {arn: label for label, arn in stage.keys.items()}
    assert echo[SSE] == "aws:kms"
    return Mode(name, key=arns.get(echo[KMS_ID], echo[KMS_ID]), bucket_key=echo.get(BUCKET_KEY) == "true",
                context=echo.get(CONTEXT))


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
async def test_header_matrix(stage: Stage, row: Row) -> None:
    if isinstance(row.expect, Mode):
        assert await resolve(stage, row) == row.expect
        return
    with pytest.raises(Exception) as raised:
        await resolve(stage, row)
    mapped = errors.to_s3_error(raised.value)
    assert mapped is not None, repr(raised.value)
    expected = dataclasses.replace(row.expect, message=row.expect.message.format(**stage.keys))
    assert Error(mapped.status, mapped.code, mapped.text) == expected


def test_the_table_names_each_row_once_and_covers_every_operation() -> None:
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert {r.op for r in ROWS} == {"PUT", "COPY", "CREATE", "GET", "HEAD", "COPY-SOURCE", "UPLOAD-PART",
                                    "UPLOAD-PART-COPY", "COMPLETE"}


def test_stored_modes_are_what_the_rows_say(stage: Stage) -> None:
    """The stage's records are sealed in the modes the rows name (a row about an SSE-C object reads one)."""
    assert {name: f[KEY_MODE] for name, f in stage.fields.items()} == {
        "AES256": "AES256", "aws:kms": "aws:kms", "bucket-key": "aws:kms", "SSE-C": "SSE-C", "disabled": "aws:kms"}
