"""redact: a request's secrets (SSE-C keys, tokens, signatures) never reach an error document or a
log line, in any form an error might quote them."""

from __future__ import annotations

import base64
import logging
import urllib.parse

from aiohttp.http_exceptions import BadHttpMessage
from multidict import CIMultiDict

from s3proxy import redact

CUSTOMER_KEY = base64.b64encode(bytes(range(32))).decode()
SIGNATURE = "f" * 16 + "0123456789abcdef" * 3
AUTHORIZATION = ("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/s3/aws4_request, "
                 f"SignedHeaders=host;x-amz-date, Signature={SIGNATURE}")


def test_request_secrets_names_every_secret_of_a_request_and_nothing_public() -> None:
    headers = CIMultiDict({"Authorization": AUTHORIZATION, "x-amz-server-side-encryption-customer-key": CUSTOMER_KEY,
                           "X-Amz-Security-Token": "session-token-value", "Host": "example.com"})
    query = f"X-Amz-Signature={SIGNATURE}&prefix=photos%2F&x-amz-security-token=session%2Btoken%3D"
    found = redact.request_secrets(headers, query)
    for secret in (CUSTOMER_KEY, SIGNATURE, "session-token-value", "session%2Btoken%3D", "session+token="):
        assert secret in found, secret
    assert not any(public in found for public in ("AKIAEXAMPLE", "host;x-amz-date", "photos%2F", "example.com"))
    assert found == sorted(found, key=len, reverse=True)  # longest first, so no part of one survives another


def test_sigv2_and_unknown_schemes() -> None:
    assert redact.request_secrets(CIMultiDict({"Authorization": "AWS AKIAEXAMPLE:c2lnbmF0dXJlIHYy"}), "") == ["c2lnbmF0dXJlIHYy"]
    odd = redact.request_secrets(CIMultiDict({"Authorization": "Bearer some-opaque-token"}), "")
    assert "some-opaque-token" in odd  # not AWS's: every part of it may be the secret


def test_scrub_error_masks_the_message_and_every_field() -> None:
    headers = {"x-amz-server-side-encryption-customer-key": CUSTOMER_KEY, "authorization": AUTHORIZATION}
    message, fields = redact.scrub_error(f"bad key {CUSTOMER_KEY}", {"ArgumentValue": CUSTOMER_KEY,
                                                                     "SignatureProvided": SIGNATURE},
                                         headers, f"x-amz-security-token={urllib.parse.quote(CUSTOMER_KEY, safe='')}")
    assert message == f"bad key {redact.REDACTED}"
    assert fields == {"ArgumentValue": redact.REDACTED, "SignatureProvided": redact.REDACTED}


def test_log_text_is_masked_by_pattern_and_by_value() -> None:
    text = redact.scrub_log_text(
        f"headers: {{'x-amz-server-side-encryption-customer-key': '{CUSTOMER_KEY}'}}\nurl=/b/k?X-Amz-Signature={SIGNATURE}&a=1 "
        f"data key {bytes(range(32)).hex()} secret=s3cr3t-access-key", ["s3cr3t-access-key"])
    for secret in (CUSTOMER_KEY, SIGNATURE, bytes(range(32)).hex(), "s3cr3t-access-key"):
        assert secret not in text
    assert "a=1" in text and "url=/b/k?X-Amz-Signature=" in text


def test_the_log_filter_rewrites_message_arguments_and_traceback_once() -> None:
    redactor = redact.LogRedactor()
    redactor.add_secrets(["s3cr3t-access-key", "short"])  # too short to mask without mangling text
    try:
        raise ValueError(f"key {CUSTOMER_KEY}")
    except ValueError as exc:
        record = logging.LogRecord(
            "s3proxy.test", logging.ERROR, __file__, 1, "with %s", ("s3cr3t-access-key",), (ValueError, exc, None)
        )
    assert redactor.filter(record) and record.args is None
    assert record.getMessage() == f"with {redact.REDACTED}" and "short" not in redactor._secrets
    assert CUSTOMER_KEY not in (record.exc_text or "") and "ValueError" in (record.exc_text or "")
    assert redactor.filter(record) and record.getMessage() == f"with {redact.REDACTED}"  # a second pass changes nothing


def test_aiohttp_parser_errors_keep_only_their_type_and_status() -> None:
    """aiohttp quotes the raw request bytes in its parser errors: none of them may be logged."""
    exc = BadHttpMessage(f"Invalid header value: x-amz-server-side-encryption-customer-key={CUSTOMER_KEY}")
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (), (type(exc), exc, None))
    redact.LogRedactor().filter(record)
    assert record.exc_text == "aiohttp.http_exceptions.BadHttpMessage: HTTP 400 (request bytes not logged)"
