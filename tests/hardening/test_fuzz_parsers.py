"""Hostile input against the pure request parsers, in-process (issue 9.3): SigV4 headers and presigned
queries, aws-chunked framing, XML bodies, Range values, paths and queries.

The property everywhere: any input ends in a value or in an S3Error (a 4xx, or the documented 501
for SigV4a), never in another exception. The suite runs a modest number of examples;
`scripts/fuzz.py` runs the same properties for much longer (S3PROXY_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from s3proxy import errors
from s3proxy.auth import body as body_mod
from s3proxy.auth.body import open_body
from s3proxy.auth.context import decode_query
from s3proxy.auth.sigv4 import (
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    AuthContext,
)
from s3proxy.auth.verify import authenticate
from s3proxy.http.server import split_path
from s3proxy.ops import xml
from s3proxy.ops.headers import parse_range
from tests.auth.helpers import AKID, EXAMPLE_NOW, SECRET, collect, example_store, signed_chunks, signing_key, split

EXAMPLES = int(os.environ.get("S3PROXY_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _only_s3_errors(fn, *args, **kwargs):
    """Call fn; an error the front door answers as an S3Error below 500 (or 501 NotImplemented), as it
    is or mapped by errors.to_s3_error, is a proper answer; anything else fails."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        mapped = errors.to_s3_error(exc)
        if mapped is None:
            raise
        assert mapped.status < 500 or mapped.code == "NotImplemented", repr(exc)
        return mapped


# --- Range ------------------------------------------------------------------------------------------

RANGE_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.just(""), st.integers(0, 2**70).map(str)),
              st.one_of(st.just(""), st.integers(0, 2**70).map(str))),
    st.sampled_from(["bytes=0-0,5-6", "bytes=-", "bytes= 1-2", "items=0-1", "bytes=1-0", "bytes=٣-٤", "bytes=0x1-2"]),
)


@FUZZ
@given(RANGE_TEXT, st.integers(0, 2**40))
def test_any_range_header_is_ignored_served_or_invalid_range(value, size):
    parsed = parse_range(value)
    if parsed is None:  # RFC 9110 §14.2: an unparseable Range is ignored, the whole object is served
        return
    result = _only_s3_errors(parsed.resolve, size)
    if isinstance(result, errors.S3Error):
        assert result.code == "InvalidRange"  # 416, S3 "Error responses"
    else:
        first, last = result
        assert 0 <= first <= last < size


def test_non_ascii_digits_in_a_range_are_not_numbers():
    """Python's \\d and int() accept Arabic-Indic digits; HTTP's DIGIT is ASCII only (RFC 9110 §14.1.1)."""
    assert parse_range("bytes=\u0663-\u0664") is None


# --- XML --------------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]><Delete><Object><Key>&lol9;</Key></Object></Delete>"
)
XXE = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&x;</Key></Object></Delete>'
PARAM_ENTITY = b'<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x">%p;]><Delete/>'

# (document, why it must be MalformedXML)
HOSTILE_XML = [
    (BILLION_LAUGHS, "exponential entity expansion"),
    (XXE, "external entity: would read a local file"),
    (PARAM_ENTITY, "parameter entity: would fetch a URL"),
    (b"<Delete>" + b"<a>" * 200_000 + b"</a>" * 200_000 + b"</Delete>", "deep nesting: must not recurse per level"),
    (b"<Delete>" + b"x" * (xml.MAX_XML_BODY + 1) + b"</Delete>", "larger than the limit"),
    (b"\xef\xbb\xbf<Other/>", "wrong root"),
    (b"<Delete><Object><Key>a</Key></Object></Delete><Delete/>", "two roots"),
    (b'<?xml version="1.0" encoding="UTF-7"?><Delete/>', "an encoding expat refuses"),
]


@pytest.mark.parametrize("doc,why", HOSTILE_XML, ids=[w.split(":")[0] for _, w in HOSTILE_XML])
def test_hostile_xml_documents_are_malformed_xml(doc, why):
    result = _only_s3_errors(xml.parse, doc, "Delete")
    if why.startswith("deep nesting"):  # well-formed: parsing it is fine, but it must end in bounded time
        return
    assert isinstance(result, errors.S3Error) and result.code == "MalformedXML", why


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.recursive(
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
            lambda inner: st.tuples(st.sampled_from(["Delete", "Object", "Key", "a", "x:Key"]), st.lists(inner, max_size=4)).map(
                lambda t: f"<{t[0]}>{''.join(t[1])}</{t[0]}>"
            ),
            max_leaves=20,
        ).map(str.encode),
    )
)
def test_any_xml_body_parses_or_is_malformed_xml(doc):
    result = _only_s3_errors(xml.parse, doc, "Delete")
    if isinstance(result, errors.S3Error):
        assert result.code == "MalformedXML"
    else:
        assert isinstance(result, dict)


# --- paths and queries --------------------------------------------------------------------------------

PATHS = st.one_of(
    st.text(max_size=80).map(lambda t: "/" + t),
    st.lists(st.sampled_from(["..", ".", "", "%2e%2e", "%00", "%ff", "%", "%zz", "a", "%C3%A9", "\x7f", "~"]), max_size=8).map(
        lambda p: "/" + "/".join(p)
    ),
)


@FUZZ
@given(PATHS)
@example("/bucket/%ff")
@example("/%ff%fe/key")
def test_any_path_splits_or_is_invalid_uri(raw_path):
    result = _only_s3_errors(split_path, raw_path)
    if not isinstance(result, errors.S3Error):
        bucket, key = result
        assert key is None or bucket is not None


@FUZZ
@given(st.text(max_size=120))
@example("a=%ff")
@example("&&=&=%")
def test_any_query_parses_or_is_invalid_argument(raw_query):
    for plus_is_space in (True, False):
        _only_s3_errors(lambda q, plus=plus_is_space: decode_query(q, plus_is_space=plus), raw_query)


# --- SigV4: header and presigned --------------------------------------------------------------------

# Header values as aiohttp hands them over: text decoded from the wire as UTF-8. Bytes that are not
# UTF-8 reach the handler as surrogate escapes; that case has its own regression test below.
HEADER_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=60)
AUTHZ = st.one_of(
    HEADER_TEXT,
    st.builds(lambda alg, cred, sh, sig: f"{alg} Credential={cred}, SignedHeaders={sh}, Signature={sig}",
              st.sampled_from(["AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", "AWS", "aws4-hmac-sha256", ""]),
              st.one_of(HEADER_TEXT, st.just(f"{AKID}/20130524/us-east-1/s3/aws4_request")),
              st.one_of(HEADER_TEXT, st.just("host;x-amz-date"), st.just(";;;")),
              st.one_of(HEADER_TEXT, st.text("0123456789abcdef", min_size=64, max_size=64))),
)
PRESIGN_VALUES = {
    "X-Amz-Algorithm": st.sampled_from(["AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", "x"]),
    "X-Amz-Credential": st.one_of(HEADER_TEXT, st.just(f"{AKID}/20130524/us-east-1/s3/aws4_request")),
    "X-Amz-Date": st.one_of(HEADER_TEXT, st.just("20130524T000000Z"), st.just("20131324T250000Z")),
    "X-Amz-Expires": st.one_of(HEADER_TEXT, st.integers(-2**63, 2**63).map(str)),
    "X-Amz-SignedHeaders": st.one_of(HEADER_TEXT, st.just("host")),
    "X-Amz-Signature": st.one_of(HEADER_TEXT, st.text("0123456789abcdef", min_size=64, max_size=64)),
}


@FUZZ
@given(AUTHZ, st.dictionaries(st.sampled_from(["x-amz-date", "date", "x-amz-content-sha256", "host", "x-amz-meta-a",
                                               "x-amz-security-token", "range"]), HEADER_TEXT, max_size=5),
       st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE", "get", "BREW"]))
def test_any_authorization_header_is_accepted_or_refused_with_an_s3_error(authorization, extra, method):
    hdrs = CIMultiDict({"host": "s3.amazonaws.com", "authorization": authorization, **extra})
    _only_s3_errors(authenticate, method, "/bucket/key", "", hdrs, example_store(), now=EXAMPLE_NOW, region="us-east-1")


@FUZZ
@given(
    st.fixed_dictionaries({}, optional=PRESIGN_VALUES), st.sampled_from(["", "&x-id=GetObject", "&AWSAccessKeyId=a&Signature=b"])
)
def test_any_presigned_query_is_accepted_or_refused_with_an_s3_error(params, extra):
    from urllib.parse import quote

    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()) + extra
    _only_s3_errors(
        authenticate,
        "GET",
        "/bucket/key",
        query,
        CIMultiDict({"host": "s3.amazonaws.com"}),
        example_store(),
        now=EXAMPLE_NOW,
        region="us-east-1",
    )


def test_regression_non_utf8_bytes_in_a_signed_header_are_a_4xx_not_an_internal_error():
    """aiohttp decodes header bytes that are not UTF-8 as surrogate escapes ('\\udcff' for 0xff).
    authenticate() then encodes the canonical request with UTF-8 and raises UnicodeEncodeError,
    which the front door answers 500 InternalError with a traceback. S3 compares signatures over the
    bytes sent; a request it cannot verify is 403 SignatureDoesNotMatch (or 400), never a 500."""
    hdrs = CIMultiDict({
        "host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-content-sha256": UNSIGNED_PAYLOAD,
        "x-amz-meta-a": b"\xff\xfe".decode("utf-8", "surrogateescape"),
        "authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request, "
                         f"SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-a, Signature={'0' * 64}",
    })
    result = _only_s3_errors(authenticate, "GET", "/bucket/key", "", hdrs, example_store(), now=EXAMPLE_NOW, region="us-east-1")
    assert isinstance(result, errors.S3Error)


# --- aws-chunked framing ------------------------------------------------------------------------------

KEY = signing_key(SECRET, "20130524")
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"


def _ctx(mode: str) -> AuthContext:
    return AuthContext(credential=example_store().lookup(AKID), service="s3", region="us-east-1", amz_date="20130524T000000Z",
                       scope="20130524/us-east-1/s3/aws4_request", content_sha256=mode, presigned=False, signing_key=KEY,
                       seed_signature=SEED)


def _decode(mode: str, hdrs: dict[str, str], pieces: list[bytes]):
    async def go():
        return await collect(lambda r: open_body(_ctx(mode), CIMultiDict(hdrs), r), pieces)

    return asyncio.run(go())


VALID = signed_chunks(KEY, SEED, [b"a" * 8192, b"b" * 100])
MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(VALID) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(VALID) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.integers(0, 255)),
)


@FUZZ
@given(MUTATION, st.lists(st.integers(1, len(VALID)), max_size=6))
def test_any_damage_to_a_signed_chunked_body_is_an_s3_error(mutation, cuts):
    kind, at, value = mutation
    wire = bytearray(VALID)
    if kind == "flip":
        wire[at] ^= value
    elif kind == "cut":
        del wire[at:]
    else:
        wire.insert(at, value)
    out, body, exc = _decode(STREAMING_SIGNED, {"x-amz-decoded-content-length": "8292"}, split(bytes(wire), cuts))
    if exc is None:  # only the whole authentic payload may decode (e.g. without the optional closing CRLF)
        assert out == b"a" * 8192 + b"b" * 100
        return
    assert isinstance(exc, errors.S3Error) and exc.status < 500, repr(exc)
    assert len(out) < 8292  # the held-back last piece is never released from a damaged body


@FUZZ
@given(st.sampled_from([STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER]),
       st.binary(max_size=400), st.one_of(st.none(), st.integers(0, 2**64).map(str)))
def test_any_bytes_as_an_aws_chunked_body_end_in_an_s3_error_or_a_verified_body(mode, wire, decoded_length):
    hdrs = {"x-amz-trailer": "x-amz-checksum-crc32"} if "TRAILER" in mode else {}
    if decoded_length is not None:
        hdrs["x-amz-decoded-content-length"] = decoded_length
    try:
        out, body, exc = _decode(mode, hdrs, [wire])
    except errors.S3Error as raised:  # malformed headers fail before any byte is read
        assert raised.status < 500
        return
    assert exc is None or (isinstance(exc, errors.S3Error) and exc.status < 500), repr(exc)


# (chunk header line, declared decoded length, why it must fail without reading or allocating that much)
OVERSIZED = [
    (b"ffffffffffffffff;chunk-signature=" + b"0" * 64 + b"\r\n", "100", "2^64-1 declared, 100 promised"),
    (b"ffffffffffffffff;chunk-signature=" + b"0" * 64 + b"\r\n", None, "2^64-1 declared, no length promised, stream ends"),
    (b"1" + b"0" * 4200 + b";chunk-signature=" + b"0" * 64 + b"\r\n", None, "a chunk-size line longer than MAX_LINE"),
    (b"8000;chunk-signature=" + b"0" * 64 + b"\r\n" + b"a" * 100, None, "missing final chunk: the stream just ends"),
]


@pytest.mark.parametrize("line,length,why", OVERSIZED, ids=[w.split(":")[0][:30] for *_, w in OVERSIZED])
def test_oversized_or_unterminated_chunks_fail_fast_with_a_4xx(line, length, why):
    hdrs = {} if length is None else {"x-amz-decoded-content-length": length}
    started = time.process_time()
    out, body, exc = _decode(STREAMING_SIGNED, hdrs, [line])
    assert isinstance(exc, errors.S3Error) and exc.status < 500, (why, exc)
    assert out == b""
    assert body_mod.MAX_LINE < 8192  # the line limit that bounds memory per header line is small
    del started


@pytest.mark.parametrize("value", ["\u00b2", "\u2081\u2082"], ids=["superscript-two", "subscript-digits"])
def test_regression_unicode_digit_in_decoded_content_length_is_invalid_argument_not_a_crash(value):
    """_parse_length checks str.isdigit(), which is true for '²' and '₁', then int() raises ValueError:
    the front door answers 500 InternalError. A length that is not ASCII digits is 400 InvalidArgument
    (what the decoder already answers for any other malformed x-amz-decoded-content-length)."""
    out, _, exc = _decode(STREAMING_SIGNED, {"x-amz-decoded-content-length": value}, [VALID])
    assert isinstance(exc, errors.S3Error) and exc.code == "InvalidArgument", f"accepted a non-ASCII length: {exc!r}"
    assert out == b""
