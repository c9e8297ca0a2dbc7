"""Secrets never leave the proxy in a log line or an error document.

What counts as a secret of a request: SSE-C keys (x-amz-server-side-encryption-customer-key and its
copy-source twin), session tokens (X-Amz-Security-Token), and signatures: the Authorization header's
signature (everything in it but the scheme, Credential and SignedHeaders; all of it when the scheme is
not one of AWS's), the X-Amz-Signature and Signature query parameters. A valid signature of a
presigned URL is a bearer token, and a "wrong" one may be right for another request.

* Error documents: `scrub_error(...)` takes the secrets the request carries, in every form an error
  may quote them (as sent, decoded, re-encoded), and replaces them wherever they appear in the
  message and the extra fields (ArgumentValue, SignatureProvided, StringToSign, CanonicalRequest,
  ...). Whatever path built the error, it cannot echo them.
* Logs: `LogRedactor`, a logging.Filter, sees each record once it is made and rewrites it: message,
  arguments and traceback become one scrubbed text. It knows no request, so it masks by pattern
  (the secret header and parameter names followed by a value, SigV2's `AWS id:signature`,
  anything shaped like a 256-bit key in base64 or hex) and the configured secret access keys by
  value. aiohttp's own parser errors quote the raw request bytes (even a bare header value, when a
  line is too long), so for those only the error's type and status are kept.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping

from aiohttp.http_exceptions import HttpProcessingError

REDACTED = "<redacted>"
MIN_SECRET = 8  # shorter "secrets" are not worth masking, and masking them would mangle text
SECRET_HEADERS = (
    "x-amz-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-key",
    "x-amz-security-token",
)
SECRET_PARAMS = frozenset({"x-amz-signature", "signature", "x-amz-security-token", *SECRET_HEADERS})
AWS_SCHEMES = frozenset({"AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"})
PUBLIC_COMPONENTS = frozenset({"Credential", "SignedHeaders"})
# the loggers a request can reach: aiohttp's (the parser and handler errors quote request bytes) and asyncio's
THIRD_PARTY_LOGGERS = ("aiohttp.access", "aiohttp.client", "aiohttp.internal", "aiohttp.server", "aiohttp.web",
                       "aiohttp.websocket", "asyncio")


# error documents ------------------------------------------------------------------------------------


def request_secrets(headers: Mapping[str, str], raw_query: str) -> list[str]:
    """The secret strings a request carries, each in the forms an error might quote it, longest first."""
    found: set[str] = set()
    getall = getattr(headers, "getall", None)
    for name in SECRET_HEADERS:
        values = getall(name, []) if getall else [v for k, v in headers.items() if k.lower() == name]
        found.update(v.strip() for v in values)
    authorization = headers.get("authorization")
    if authorization is not None:
        found.update(_authorization_secrets(authorization))
    for pair in raw_query.split("&") if raw_query else ():
        name, _, value = pair.partition("=")
        if urllib.parse.unquote(name).lower() in SECRET_PARAMS:
            found.update({value, urllib.parse.unquote(value), urllib.parse.unquote_plus(value)})
            found.add(urllib.parse.quote(urllib.parse.unquote(value), safe="-_.~"))
    return sorted({s for s in found if len(s) >= MIN_SECRET}, key=len, reverse=True)


def _authorization_secrets(value: str) -> set[str]:
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme == "AWS":  # SigV2: AWS <access key id>:<signature>
        access_key, sep, signature = rest.rpartition(":")
        return {signature.strip()} if sep and access_key else {rest}
    if scheme not in AWS_SCHEMES:  # not an AWS scheme: any part of it may be the secret
        return {value.strip(), rest, *rest.replace(",", " ").split()}
    secrets: set[str] = set()
    for component in rest.split(","):
        name, eq, val = component.strip().partition("=")
        if eq and name.strip() in PUBLIC_COMPONENTS:
            continue
        secrets.add(val.strip() if eq else component.strip())
    return secrets


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub_error(
    message: str, fields: Mapping[str, str], headers: Mapping[str, str], raw_query: str
) -> tuple[str, dict[str, str]]:
    """An error's message and extra fields with every secret of the request masked."""
    secrets = request_secrets(headers, raw_query)
    return scrub(message, secrets), {k: scrub(v, secrets) for k, v in fields.items()}


# logs ---------------------------------------------------------------------------------------------

_NAMED = "|".join(re.escape(n) for n in (*SECRET_HEADERS, "authorization"))
_NAMED_PATTERNS = (
    # a secret header, however quoted (`name: v`, `'name': 'v'`, `name=v`): the rest of the line
    (re.compile(rf"(?i)((?<![\w-])(?:{_NAMED})(?:-md5)?['\"]?\s*[:=]\s*)[^\r\n]*"), rf"\g<1>{REDACTED}"),
    # a signature or token parameter (query strings, the SigV4 Authorization components)
    (re.compile(r"(?i)((?<![\w-])(?:x-amz-signature|signature|x-amz-security-token)['\"]?\s*[:=]\s*['\"]?)[^&\s'\",<>]*"),
     rf"\g<1>{REDACTED}"),
    # SigV2: AWS <access key id>:<signature>
    (re.compile(r"(?<![\w-])(AWS [A-Za-z0-9]{8,128}:)\S+"), rf"\g<1>{REDACTED}"),
)
_TRIGGERS = ("customer-key", "security-token", "signature", "authorization", "aws ")  # cheap test before those
# 32 bytes in base64 (an SSE-C or data key) or 64 hex digits (a key, or a SigV4 signature); both are
# runs of 43 or more characters of the base64 alphabet, which is the cheap test
_KEY_RUN = re.compile(r"[A-Za-z0-9+/]{43}")
_KEY_LIKE = (
    re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])"),
    re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])"),
)


def scrub_log_text(text: str, secrets: Iterable[str] = ()) -> str:
    lowered = text.lower()
    if any(trigger in lowered for trigger in _TRIGGERS):
        for pattern, replacement in _NAMED_PATTERNS:
            text = pattern.sub(replacement, text)
    if _KEY_RUN.search(text):
        for pattern in _KEY_LIKE:
            text = pattern.sub(REDACTED, text)
    return scrub(text, secrets)


class LogRedactor(logging.Filter):
    """Rewrites each record into scrubbed text (see the module docstring); never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add_secrets(self, secrets: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if s and len(s) >= MIN_SECRET}
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "s3proxy_redacted", False):  # met already, on its logger (now at a handler)
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep its template, never its arguments
            message = str(record.msg)
        trace = record.exc_text
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if isinstance(exc, HttpProcessingError):  # its message quotes the raw request
                trace = f"{type(exc).__module__}.{type(exc).__qualname__}: HTTP {exc.code} (request bytes not logged)"
            else:
                trace = logging.Formatter().formatException(record.exc_info)
        secrets = self._secrets
        record.msg, record.args = scrub_log_text(message, secrets), None
        record.exc_info, record.exc_text = None, scrub_log_text(trace, secrets) if trace else None
        if record.stack_info:
            record.stack_info = scrub_log_text(record.stack_info, secrets)
        record.s3proxy_redacted = True
        return True


REDACTOR = LogRedactor()


def install_log_redaction(secrets: Iterable[str] = (), handlers: Iterable[logging.Handler] = ()) -> LogRedactor:
    """Put the one LogRedactor on aiohttp's and asyncio's loggers, on every s3proxy logger, and on
    `handlers` (serve: the root handler, which also catches whatever other libraries log); add
    `secrets` (secret access keys) to what it masks by value. Idempotent."""
    REDACTOR.add_secrets(secrets)
    names = {*THIRD_PARTY_LOGGERS, "s3proxy"}
    names.update(n for n in list(logging.root.manager.loggerDict) if n.startswith("s3proxy."))
    for name in names:
        logger = logging.getLogger(name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    for handler in handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)
    return REDACTOR
