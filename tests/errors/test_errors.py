"""errors: the S3 error tree as AWS documents it, and the one table mapping lower-layer errors onto it."""

from __future__ import annotations

import pytest

from s3proxy import errors
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import RangeNotSatisfiable
from s3proxy.kms import errors as kms_errors


@pytest.mark.parametrize(("name", "code", "status"), [
    ("AccessDenied", "AccessDenied", 403),
    ("InvalidEncryptionAlgorithm", "InvalidEncryptionAlgorithmError", 400),  # the class name is not the code
    ("IllegalVersioningConfiguration", "IllegalVersioningConfigurationException", 400),
    ("InvalidPartNumber", "InvalidPartNumber", 416),
    ("NotModified", "NotModified", 304),
    ("NotImplemented", "NotImplemented", 501),
])
def test_classes_carry_the_aws_code_and_status(name: str, code: str, status: int) -> None:
    cls = getattr(errors, name)
    assert (cls.code, cls.status) == (code, status) and errors.BY_CODE[code] is cls


def test_an_error_keeps_its_message_resource_headers_and_fields_as_strings() -> None:
    exc = errors.InvalidArgument("Bad.", resource="/b/k", headers={"x-amz-h": "v"}, ArgumentName="n", Size=5)
    assert (exc.text, exc.resource, exc.headers, exc.fields) == (
        "Bad.",
        "/b/k",
        {"x-amz-h": "v"},
        {"ArgumentName": "n", "Size": "5"},
    )
    assert errors.NoSuchKey().text == "The specified key does not exist."
    assert repr(exc) == "InvalidArgument(InvalidArgument, 400, 'Bad.')"


def test_from_code_keeps_what_the_wire_said() -> None:
    known = errors.from_code("NoSuchKey", 404, "gone")
    assert isinstance(known, errors.NoSuchKey) and known.text == "gone"
    odd = errors.from_code("NoSuchKey", 410)  # a known code with another status: the status wins
    assert (odd.code, odd.status, type(odd) is not errors.NoSuchKey) == ("NoSuchKey", 410, True)
    unknown = errors.from_code("WeirdThing", 409)
    assert (unknown.code, unknown.status, unknown.text) == ("WeirdThing", 409, "WeirdThing")


@pytest.mark.parametrize(("exc", "expected"), [
    (errors.SlowDown(), ("SlowDown", 503, "Please reduce your request rate.")),
    (IntegrityError(), ("InternalError", 500, "The stored object failed its integrity check and was not returned.")),
    (RangeNotSatisfiable(3, "bytes=5-"), ("InvalidRange", 416, "The requested range is not satisfiable")),
    (kms_errors.AccessDeniedException("no"), ("AccessDenied", 403, "no")),
    (kms_errors.NotFoundException("Invalid keyId x"), ("KMS.NotFoundException", 400, "Invalid keyId x")),
    (kms_errors.KMSInternalException(), ("KMS.KMSInternalException", 500, kms_errors.KMSInternalException.message)),
], ids=["s3-error", "integrity", "range", "kms-access-denied", "kms-not-found", "kms-internal"])
def test_to_s3_error_is_the_one_mapping(exc: BaseException, expected: tuple[str, int, str]) -> None:
    mapped = errors.to_s3_error(exc)
    assert mapped is not None and (mapped.code, mapped.status, mapped.text) == expected
    if isinstance(exc, errors.S3Error):
        assert mapped is exc


def test_anything_else_is_unmapped() -> None:
    for exc in (RuntimeError("x"), ValueError(), KeyError("k"), OSError(5, "io")):
        assert errors.to_s3_error(exc) is None
