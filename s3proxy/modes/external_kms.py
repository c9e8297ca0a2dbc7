"""SSE-KMS through an external KMS: a DataKeySource that asks any AWS-KMS-compatible endpoint (`kms_url`).

AWS KMS itself, LocalStack, moto or another s3proxy serve SSE-KMS data keys and S3 Bucket Keys
instead of the internal key service; SSE-S3 and the store's own secrets stay with the internal
service key (`internal`), as in AWS, where S3 owns its SSE-S3 keys. Each call is one KMS JSON 1.1
request (GenerateDataKey, Encrypt, Decrypt) signed with SigV4 (service `kms`) by the proxy's own
credential (`kms_access_key`): the external KMS authorizes and audits the proxy. What AWS S3 sends
KMS, this sends too: the encryption context `aws:s3:arn` (the object's ARN, or the bucket's with a
Bucket Key) with the requester's own context, and, as S3 names the service it calls for, the
requester: its principal ARN and source address ride in the User-Agent
(`s3proxy/1 (on behalf of <principal ARN> from <ip>)`), which AWS's CloudTrail and s3proxy's
audit log record. The requester's own right to use the key is the external KMS's business only as
far as the proxy's credential goes: give that credential only the keys its users may all use.

Errors come back as the KMS errors they are (`KMS.<code>` on the S3 side); an endpoint that cannot
be reached, times out or answers garbage is DependencyTimeoutException (503): nothing is written
without its key. A cached Bucket Key is used for its time-to-live without a KMS call, as in AWS
(the internal core's per-use authorization is its own feature).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ..backends.signer import Signer
from ..kms.caller import Caller
from ..kms.datakeys import DataKey, DataKeySource, Encrypted
from ..kms.errors import DependencyTimeoutException, KmsError

_CONTENT_TYPE = "application/x-amz-json-1.1"
_MAX_ANSWER = 1 << 20
_ERRORS: dict[tuple[str, int], type[KmsError]] = {}
_ERRORS_LOCK = threading.Lock()


def remote_error(code: str, status: int, message: str) -> KmsError:
    """The external KMS's error as a KmsError with its code and status (one class per pair)."""
    key = (code, status)
    with _ERRORS_LOCK:
        cls = _ERRORS.get(key)
        if cls is None:
            cls = type(code, (KmsError,), {"code": code, "status": status, "message": message})
            _ERRORS[key] = cls
    return cls(message or None)


class ExternalKms:
    """DataKeySource over an external KMS endpoint; SSE-S3 and service keys go to `internal`."""

    def __init__(self, url: str, *, region: str, access_key: str, secret_key: str, internal: DataKeySource,
                 timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("kms_url must be an http:// or https:// URL")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._host_header = parts.netloc
        self._path = parts.path or "/"
        self._signer = Signer(access_key, secret_key, region, "kms")
        self._internal = internal
        self._timeout = timeout
        self._local = threading.local()  # one kept-alive connection per worker thread
        self._open: set[http.client.HTTPConnection] = set()  # all of them, for close()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ExternalKms({self.url})"

    # the wire ----------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._open.add(conn)
        return conn

    def _forget(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            self._open.discard(conn)

    def close(self) -> None:
        """Close every kept-alive connection (the proxy is stopping)."""
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.close()

    def call(self, operation: str, body: Mapping[str, Any], caller: Caller | None = None) -> dict[str, Any]:
        """One signed TrentService call; the answer's JSON, or its error as a KmsError."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        agent = "s3proxy/1"
        if caller is not None:  # the requester, as S3 names it to KMS (printable ASCII only: a header value)
            agent += f" (on behalf of {caller.arn} from {caller.source_ip or '-'})"
        headers = self._signer.sign("POST", self._path, "", {
            "host": self._host_header, "content-type": _CONTENT_TYPE, "x-amz-target": f"TrentService.{operation}",
            "user-agent": agent.encode("ascii", "replace").decode(),
        }, hashlib.sha256(payload).hexdigest())
        for attempt in range(2):  # a kept-alive connection the server closed meanwhile is retried once, afresh
            conn = self._connection()
            try:
                conn.request("POST", self._path, body=payload, headers=headers)
                response = conn.getresponse()
                status, raw = response.status, response.read(_MAX_ANSWER + 1)
                break
            except (OSError, http.client.HTTPException):
                self._forget(conn)
                if attempt:
                    raise DependencyTimeoutException(f"The external KMS at {self.url} cannot be reached.") from None
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = None
        if len(raw) > _MAX_ANSWER or not isinstance(answer, dict):
            raise DependencyTimeoutException(f"The external KMS at {self.url} sent an answer that is not KMS JSON.")
        if status != 200:
            code = str(answer.get("__type", "KMSInternalException")).rpartition("#")[2]
            message = str(answer.get("message") or answer.get("Message") or "")
            return_status = status if 400 <= status < 600 else 500
            raise remote_error(code, return_status, message)
        return answer

    @staticmethod
    def _blob(answer: Mapping[str, Any], name: str) -> bytes:
        try:
            return base64.b64decode(answer[name], validate=True)
        except (KeyError, TypeError, ValueError):
            raise DependencyTimeoutException(f"The external KMS answered without a valid {name}.") from None

    # the DataKeySource seam ---------------------------------------------------------------------
    def generate_data_key(self, caller: Caller, key_id: str, context: Mapping[str, str] | None = None) -> DataKey:
        if caller.is_service:
            return self._internal.generate_data_key(caller, key_id, context)
        body: dict[str, Any] = {"KeyId": key_id, "KeySpec": "AES_256"}
        if context:
            body["EncryptionContext"] = dict(context)
        answer = self.call("GenerateDataKey", body, caller)
        plaintext = self._blob(answer, "Plaintext")
        if len(plaintext) != 32:
            raise DependencyTimeoutException("The external KMS returned a data key that is not 256 bits.")
        return DataKey(str(answer.get("KeyId", key_id)), plaintext, self._blob(answer, "CiphertextBlob"),
                       str(answer.get("KeyMaterialId", "")))

    def encrypt(self, caller: Caller, key_id: str, plaintext: bytes, context: Mapping[str, str] | None = None) -> Encrypted:
        if caller.is_service:
            return self._internal.encrypt(caller, key_id, plaintext, context)
        body: dict[str, Any] = {"KeyId": key_id, "Plaintext": base64.b64encode(plaintext).decode()}
        if context:
            body["EncryptionContext"] = dict(context)
        answer = self.call("Encrypt", body, caller)
        return Encrypted(self._blob(answer, "CiphertextBlob"), str(answer.get("KeyId", key_id)), "SYMMETRIC_DEFAULT")

    def decrypt_data_key(self, caller: Caller, blob: bytes, context: Mapping[str, str] | None = None) -> DataKey:
        if caller.is_service:
            return self._internal.decrypt_data_key(caller, blob, context)
        body: dict[str, Any] = {"CiphertextBlob": base64.b64encode(blob).decode()}
        if context:
            body["EncryptionContext"] = dict(context)
        answer = self.call("Decrypt", body, caller)
        return DataKey(str(answer.get("KeyId", "")), self._blob(answer, "Plaintext"), blob,
                       str(answer.get("KeyMaterialId", "")))

    def use_bucket_key(self, caller: Caller, key_id: str, key_arn: str, operation: str,
                       context: Mapping[str, str] | None, bucket: str) -> bool:
        """A cached Bucket Key from the external KMS serves its time-to-live, as in AWS S3."""
        if caller.is_service:
            return self._internal.use_bucket_key(caller, key_id, key_arn, operation, context, bucket)
        return True

    def aws_managed_key(self, caller: Caller, alias: str = "alias/aws/s3") -> str:
        """The external KMS resolves (and, AWS KMS, creates) the account's AWS-managed key behind the alias."""
        return alias

    def service_key(self) -> str:
        return self._internal.service_key()

    def is_service_key(self, key_arn: str) -> bool:
        return self._internal.is_service_key(key_arn)

    def service_caller(self, request_id: str | None = None) -> Caller:
        return self._internal.service_caller(request_id)
