"""POST Object authentication: a browser upload is signed by its form's fields, not its headers.

The form carries a base64 POST policy (JSON: an `expiration` and a list of `conditions`) and a
signature of that base64 text: SigV4 (x-amz-algorithm, x-amz-credential, x-amz-date,
x-amz-signature: hex HMAC-SHA256 under the signing key of the credential's scope) or, while the
`sigv2` setting allows it, SigV2 (AWSAccessKeyId and signature: base64 HMAC-SHA1 under the
secret). The signature is checked first, over the policy text as received; then the policy: not
expired, every condition true of the form (`eq`, `starts-with`, `content-length-range`), and
every field named by some condition except those S3 exempts (the signature's own fields, `file`,
`policy`, `x-ignore-*`). A form with neither signature is anonymous, which no bucket here accepts.

Field names and condition names compare without regard to case, values exactly. Facts and S3's
wire answers: S3 developer guide, "POST Object", "Authenticating Requests in Browser-Based Uploads
Using POST (AWS Signature Version 4)", "Creating a POST Policy", and S3's answers as recorded by
LocalStack's validated tests and by users (AccessDenied "Invalid according to Policy: ...",
InvalidPolicyDocument "Invalid Policy: ...", InvalidArgument "Bucket POST must contain a field
named ...").
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import errors
from .context import AuthContext
from .credentials import Credential, CredentialStore
from .sigv4 import ALGORITHM, TERMINATOR, amz_date_to_epoch, derive_signing_key, signatures_equal, unsupported_mechanism

V4_FIELDS = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
V2_FIELDS = ("awsaccesskeyid", "signature")
_SHOWN = {"x-amz-algorithm": "X-Amz-Algorithm", "x-amz-credential": "X-Amz-Credential", "x-amz-date": "X-Amz-Date",
          "x-amz-signature": "X-Amz-Signature", "awsaccesskeyid": "AWSAccessKeyId", "signature": "Signature",
          "policy": "Policy"}
_EXPIRATION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z\Z")
_OPERATIONS = ("eq", "starts-with", "content-length-range")


@dataclass(frozen=True)
class Condition:
    operation: str  # eq | starts-with | content-length-range (lower case)
    name: str  # the field, lower case, without "$"; "" for content-length-range
    value: str = ""
    low: int = 0
    high: int = 0
    shown: str = ""  # as the policy wrote it, for the error
    unusable: bool = False  # a content-length-range bound that is no number: S3 answers the condition as failed

    def covers(self, field: str) -> bool:
        return self.operation != "content-length-range" and self.name == field


@dataclass(frozen=True)
class Policy:
    expiration: dt.datetime
    conditions: tuple[Condition, ...]


def authenticate_post(fields: Sequence[tuple[str, str]], *, bucket: str, size: int, store: CredentialStore, now: float,
                      region: str, sigv2_enabled: bool) -> AuthContext:
    """Who signed this form, once its policy allows what it asks (`size`: the file's length)."""
    form = _first_values(fields)
    if any(f in form for f in V4_FIELDS):
        credential, context = _verify_v4(form, store, region)
        exempt = {"x-amz-signature", "file", "policy"}
    elif any(f in form for f in V2_FIELDS):
        if not sigv2_enabled:
            raise unsupported_mechanism()
        credential, context = _verify_v2(form, store)
        exempt = {"awsaccesskeyid", "signature", "file", "policy"}
    else:  # anonymous: only a publicly writable bucket takes it, and there are none here
        raise errors.AccessDenied()
    policy = parse_policy(form["policy"])
    check_policy(policy, fields, bucket=bucket, size=size, now=now, exempt=exempt)
    amz_date = form.get("x-amz-date") or dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return AuthContext(credential=credential, service="s3", region=region, amz_date=amz_date, scope=context[0],
                       content_sha256="UNSIGNED-PAYLOAD", presigned=False, signing_key=b"",
                       signature_version=context[1])


def _first_values(fields: Sequence[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in fields:
        found.setdefault(name.lower(), value)
    return found


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        shown = _SHOWN[name]
        raise errors.InvalidArgument(
            f"Bucket POST must contain a field named '{shown}'.  If it is specified, please check the order of the fields.",
            ArgumentName=shown,
            ArgumentValue="",
        )
    return value


def _verify_v4(form: Mapping[str, str], store: CredentialStore, region: str) -> tuple[Credential, tuple[str, int]]:
    algorithm, credential_text, amz_date, signature = (_required(form, f) for f in V4_FIELDS)
    policy = _required(form, "policy")
    if algorithm != ALGORITHM:
        raise errors.InvalidArgument(
            f'X-Amz-Algorithm only supports "{ALGORITHM}"', ArgumentName="X-Amz-Algorithm", ArgumentValue=algorithm
        )
    parts = credential_text.split("/")

    def bad(message: str, **extra: str) -> errors.S3Error:
        return errors.InvalidArgument(message, ArgumentName="X-Amz-Credential", ArgumentValue=credential_text).with_fields(extra)

    if len(parts) != 5:
        raise bad('the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    access_key, date, scope_region, service, terminator = parts
    if not access_key:
        raise bad("a non-empty Access Key (AKID) must be provided in the credential.")
    if not re.fullmatch(r"\d{8}", date):
        raise bad(f'incorrect date format "{date}". This date in the credential must be in the format "yyyyMMdd".')
    if scope_region != region:
        raise bad(f"the region '{scope_region}' is wrong; expecting '{region}'", Region=region)
    if service != "s3":
        raise bad(f'incorrect service "{service}". This endpoint belongs to "s3".')
    if terminator != TERMINATOR:
        raise bad(f'incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".')
    if amz_date_to_epoch(amz_date) is None:
        raise errors.InvalidArgument(
            "X-Amz-Date must be formated via ISO8601 Long format", ArgumentName="X-Amz-Date", ArgumentValue=amz_date
        )
    credential = _credential(store, access_key)
    key = derive_signing_key(credential.secret_key, date, region, "s3")
    expected = hmac.new(key, policy.encode("utf-8"), hashlib.sha256).hexdigest()
    if not signatures_equal(expected, signature):
        raise _mismatch(access_key, policy, signature)
    return credential, (f"{date}/{region}/s3/{TERMINATOR}", 4)


def _verify_v2(form: Mapping[str, str], store: CredentialStore) -> tuple[Credential, tuple[str, int]]:
    access_key = _required(form, "awsaccesskeyid")
    signature = _required(form, "signature")
    policy = _required(form, "policy")
    credential = _credential(store, access_key)
    expected = base64.b64encode(hmac.new(credential.secret_key.encode(), policy.encode("utf-8"), hashlib.sha1).digest())
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise _mismatch(access_key, policy, signature)
    return credential, ("", 2)


def _credential(store: CredentialStore, access_key: str) -> Credential:
    credential = store.lookup(access_key)
    if credential is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    return credential


def _mismatch(access_key: str, policy: str, signature: str) -> errors.S3Error:
    """S3's answer: the string it signed is the policy as sent (no secret in it)."""
    return errors.SignatureDoesNotMatch(AWSAccessKeyId=access_key, StringToSign=policy, SignatureProvided=signature,
                                        StringToSignBytes=" ".join(f"{b:02x}" for b in policy.encode("utf-8")))


# the policy document -------------------------------------------------------------------------------


def _invalid(detail: str) -> errors.S3Error:
    return errors.InvalidPolicyDocument(f"Invalid Policy: {detail}")


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def parse_policy(text: str) -> Policy:
    """The policy of a form's `policy` field (base64 JSON); InvalidPolicyDocument when it is not one."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        raise _invalid("invalid Base64 encoding.") from None
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeError):
        raise _invalid("Invalid JSON.") from None
    if not isinstance(doc, dict):
        raise _invalid("Invalid JSON.")
    for member in doc:
        if member not in ("expiration", "conditions"):
            raise _invalid(f"Unexpected: '{member.lower()}'")
    if "expiration" not in doc:
        raise _invalid("Policy missing expiration.")
    if "conditions" not in doc:
        raise _invalid("Policy missing conditions.")
    expiration = doc["expiration"]
    if not isinstance(expiration, str) or not _EXPIRATION.match(expiration):
        raise _invalid(f"Invalid 'expiration' value: '{expiration}'")
    try:
        when = dt.datetime.strptime(expiration[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: '{expiration}'") from None
    if not isinstance(doc["conditions"], list):
        raise _invalid("Invalid 'conditions' value: must be a List.")
    return Policy(when, tuple(_condition(c) for c in doc["conditions"]))


def _condition(raw: Any) -> Condition:
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise _invalid("Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")
        (name, value), = raw.items()
        if not isinstance(value, str):
            raise _invalid("Invalid Simple-Condition: value must be a string.")
        return Condition("eq", name.lower(), value, shown=json.dumps(["eq", "$" + name, value], ensure_ascii=False))
    if not isinstance(raw, list):
        raise _invalid("Invalid condition test: must be a List or Object.")
    if not raw or not isinstance(raw[0], str):
        raise _invalid("Invalid Condition: missing operation identifier.")
    operation = raw[0].lower()
    if operation not in _OPERATIONS:
        raise _invalid(f"Invalid Condition: unknown operation '{raw[0]}'.")
    if len(raw) != 3:
        raise _invalid(f"Invalid {raw[0]}: wrong number of arguments.")
    shown = json.dumps(raw, ensure_ascii=False)
    if operation == "content-length-range":
        low, high = (_bound(v) for v in raw[1:])
        if low is None or high is None:
            return Condition(operation, "", shown=shown, unusable=True)
        if low < 0 or high < 0:
            raise _invalid("Invalid content-length-range: the bounds must not be negative.")
        return Condition(operation, "", low=low, high=high, shown=shown)
    name, value = raw[1], raw[2]
    if not isinstance(name, str) or not isinstance(value, str):
        raise _invalid("Invalid JSON.")
    # a name without "$" names no field: the condition can never hold (S3 answers it as failed)
    return Condition(operation, name[1:].lower() if name.startswith("$") else "\0" + name, value, shown=shown)


def _bound(value: Any) -> int | None:
    if isinstance(value, bool) or isinstance(value, float):
        raise _invalid("Invalid JSON.")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value):
        return int(value)
    return None


def check_policy(policy: Policy, fields: Sequence[tuple[str, str]], *, bucket: str, size: int, now: float,
                 exempt: set[str]) -> None:
    """The policy against the form: not expired, every condition true, no field left unnamed, the
    file's size in range; S3's errors otherwise."""
    if now > policy.expiration.timestamp():
        raise errors.AccessDenied("Invalid according to Policy: Policy expired.")
    form = _first_values(fields)
    form["bucket"] = bucket  # the bucket condition is about the request's bucket
    for condition in policy.conditions:
        if condition.operation == "content-length-range" and not condition.unusable:
            continue
        value = form.get(condition.name)
        if condition.unusable or value is None or not _holds(condition, value):
            raise errors.AccessDenied(f"Invalid according to Policy: Policy Condition failed: {condition.shown}")
    extra = []
    for name, _ in fields:
        low = name.lower()
        if low in exempt or low.startswith("x-ignore-") or any(c.covers(low) for c in policy.conditions):
            continue
        if name not in extra:
            extra.append(name)
    if extra:
        raise errors.AccessDenied(f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")
    for condition in policy.conditions:
        if condition.operation != "content-length-range":
            continue
        if size > condition.high:
            raise errors.EntityTooLarge("Your proposed upload exceeds the maximum allowed size",
                                        ProposedSize=str(size), MaxSizeAllowed=str(condition.high))
        if size < condition.low:
            raise errors.EntityTooSmall("Your proposed upload is smaller than the minimum allowed size",
                                        ProposedSize=str(size), MinSizeAllowed=str(condition.low))


def _holds(condition: Condition, value: str) -> bool:
    if condition.operation == "eq":
        return value == condition.value
    if condition.name == "content-type":  # S3: a Content-Type list passes when every member does
        return all(v.strip().startswith(condition.value) for v in value.split(","))
    return value.startswith(condition.value)
