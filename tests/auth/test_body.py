"""The body decoder: aws-chunked framing, chunk and trailer signatures, digests, limits, and the
hold-back contract, over a real aiohttp StreamReader fed in arbitrary pieces."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tracemalloc
import zlib

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy import errors
from s3proxy.auth import body as body_mod
from s3proxy.auth import checksums
from s3proxy.auth.body import MalformedTrailerError, open_body
from s3proxy.auth.sigv4 import AuthContext

from .helpers import (
    AKID,
    SECRET,
    _FlowControl,
    collect,
    example_store,
    headers,
    signed_chunks,
    signing_key,
    split,
    unsigned_chunks,
)

KEY = signing_key(SECRET, "20130524")
DATA = b"a" * 66560
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"


def _ctx(mode: str, seed: str = SEED) -> AuthContext:
    return AuthContext(
        credential=example_store().lookup(AKID), service="s3", region="us-east-1", amz_date="20130524T000000Z",
        scope="20130524/us-east-1/s3/aws4_request", content_sha256=mode, presigned=False, signing_key=KEY,
        seed_signature=seed,
    )


def run(mode, hdrs, wire, *, cuts=(), seed=SEED, **kw):
    pieces = split(wire, cuts) if cuts else [wire]
    return asyncio.run(collect(lambda r: open_body(_ctx(mode, seed), headers(hdrs), r, **kw), pieces))


# AWS S3 API reference, "Transferring Payload in Multiple Chunks": the documented wire bytes
AWS_CHUNKED_WIRE = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n" + b"a" * 65536
    + b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n" + b"a" * 1024
    + b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
)
# ... and "Signature calculations for trailing headers"
AWS_TRAILER_WIRE = (
    b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n" + b"a" * 65536
    + b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n" + b"a" * 1024
    + b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n"
    + b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
    + b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n"
)
CHUNKED = {"x-amz-decoded-content-length": "66560", "Content-Encoding": "aws-chunked"}
TRAILER = dict(CHUNKED, **{"x-amz-trailer": "x-amz-checksum-crc32c"})


def test_aws_chunked_example_decodes():
    assert len(AWS_CHUNKED_WIRE) == 66824  # the Content-Length the example states
    out, body, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", CHUNKED, AWS_CHUNKED_WIRE, want_md5=True)
    assert exc is None and out == DATA
    assert body.md5_hex == hashlib.md5(DATA).hexdigest() and body.content_encoding is None


def test_aws_trailer_example_decodes_and_reports_crc32c():
    out, body, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", TRAILER, AWS_TRAILER_WIRE, seed=TRAILER_SEED)
    assert exc is None and out == DATA
    assert body.checksum_algorithm == "crc32c" and body.checksums == {"crc32c": "sOO8/Q=="}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(AWS_TRAILER_WIRE)), max_size=12))
def test_any_split_of_the_wire_decodes_the_same(cuts):
    out, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", TRAILER, AWS_TRAILER_WIRE, cuts=cuts,
                      seed=TRAILER_SEED)
    assert exc is None and out == DATA


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(AWS_CHUNKED_WIRE) - 3), st.integers(1, 255))
def test_any_flipped_byte_fails_and_the_body_is_never_complete(position, flip):
    wire = bytearray(AWS_CHUNKED_WIRE)
    wire[position] ^= flip
    out, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", CHUNKED, bytes(wire))
    assert isinstance(exc, errors.S3Error) and exc.status in (400, 403)
    assert len(out) < len(DATA)


@pytest.mark.parametrize("cut", [1, 50, 87, 65623, 65625, 66700, len(AWS_CHUNKED_WIRE) - 3])
def test_truncated_chunked_body_is_incomplete(cut):
    out, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", CHUNKED, AWS_CHUNKED_WIRE[:cut])
    assert isinstance(exc, (errors.IncompleteBody, errors.SignatureDoesNotMatch)), exc
    assert len(out) < len(DATA)


def test_chunks_reordered_fail_signature():
    first = signed_chunks(KEY, SEED, [b"x" * 9000, b"y" * 9000])
    swapped = first.replace(b"x" * 9000, b"z" * 9000)
    _, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", {"x-amz-decoded-content-length": "18000"}, swapped)
    assert isinstance(exc, errors.SignatureDoesNotMatch) and exc.fields["Chunk"] == "1"


def test_declared_length_differs_from_decoded():
    _, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", dict(CHUNKED, **{"x-amz-decoded-content-length": "66561"}),
                    AWS_CHUNKED_WIRE)
    assert isinstance(exc, errors.IncompleteBody)
    _, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", dict(CHUNKED, **{"x-amz-decoded-content-length": "100"}),
                    AWS_CHUNKED_WIRE)
    assert isinstance(exc, errors.IncompleteBody)


def test_signed_chunk_smaller_than_8k_before_the_last():
    wire = signed_chunks(KEY, SEED, [b"x" * 100, b"y" * 100])
    _, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", {"x-amz-decoded-content-length": "200"}, wire)
    assert isinstance(exc, errors.InvalidChunkSize) and exc.fields == {"Chunk": "1", "BadChunkSize": "100"}


def test_signed_trailer_tampered():
    wire = AWS_TRAILER_WIRE.replace(b"sOO8/Q==", b"AAAAAA==")
    _, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", TRAILER, wire, seed=TRAILER_SEED)
    assert isinstance(exc, errors.SignatureDoesNotMatch)


def test_signed_trailer_with_wrong_checksum_but_valid_signature_is_bad_digest():
    wire = signed_chunks(KEY, TRAILER_SEED, [DATA], trailers=[("x-amz-checksum-crc32c", "AAAAAA==")])
    out, _, exc = run("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", TRAILER, wire, seed=TRAILER_SEED)
    assert isinstance(exc, errors.BadDigest) and "CRC32C you specified did not match" in exc.text
    assert len(out) < len(DATA)


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


UNSIGNED = {"x-amz-decoded-content-length": "20000", "Content-Encoding": "aws-chunked,gzip",
            "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32"}
PAYLOAD = bytes(range(256)) * 78 + b"tail" * 8


@pytest.mark.parametrize("chunks", [[PAYLOAD], [PAYLOAD[:1], PAYLOAD[1:]], [PAYLOAD[i:i + 7000] for i in range(0, 20000, 7000)]])
def test_unsigned_trailer_as_botocore_sends_it(chunks):
    wire = unsigned_chunks(chunks, [("x-amz-checksum-crc32", _crc32(PAYLOAD))])
    out, body, exc = run("STREAMING-UNSIGNED-PAYLOAD-TRAILER", UNSIGNED, wire)
    assert exc is None and out == PAYLOAD
    assert body.checksums == {"crc32": _crc32(PAYLOAD)} and body.content_encoding == "gzip"


@pytest.mark.parametrize("trailers,error,message", [
    # why: the value does not match the data
    ([("x-amz-checksum-crc32", "AAAAAA==")], errors.BadDigest, "The CRC32 you specified did not match"),
    # why: declared in x-amz-trailer but never sent
    ([], MalformedTrailerError, "trailing data"),
    # why: a different checksum than the one declared
    ([("x-amz-checksum-sha1", base64.b64encode(hashlib.sha1(PAYLOAD).digest()).decode())], MalformedTrailerError, ""),
    # why: not base64 of 4 bytes
    ([("x-amz-checksum-crc32", "!!")], errors.InvalidRequest, "x-amz-checksum-crc32 trailing header is invalid"),
    # why: a signature in an unsigned trailer
    ([("x-amz-checksum-crc32", _crc32(PAYLOAD)), ("x-amz-trailer-signature", "0" * 64)], MalformedTrailerError, ""),
])
def test_unsigned_trailer_failures(trailers, error, message):
    out, _, exc = run("STREAMING-UNSIGNED-PAYLOAD-TRAILER", UNSIGNED, unsigned_chunks([PAYLOAD], trailers))
    assert isinstance(exc, error) and message in exc.text, exc
    assert len(out) < len(PAYLOAD)


@pytest.mark.parametrize("wire,error", [
    # why each row: a framing error must be a 4xx, never a hang or a 500
    (b"zz\r\nabc\r\n0\r\n\r\n", errors.InvalidRequest),  # size not hex
    (b"1" * 5000, errors.InvalidRequest),  # size line without end, longer than MAX_LINE
    (b"4e20\r\n" + PAYLOAD + b"XX0\r\n\r\n", errors.InvalidRequest),  # data not followed by CRLF
    (b"ffffffffffffffff\r\n", errors.IncompleteBody),  # absurd size, more than declared
    (b"4e20\r\n" + PAYLOAD[:100], errors.IncompleteBody),  # cut inside the data
    (unsigned_chunks([PAYLOAD], [("x-amz-checksum-crc32", _crc32(PAYLOAD))]) + b"junk", errors.InvalidRequest),
    (b"4e20\r\n" + PAYLOAD + b"\r\n0\r\n" + b"x-a:b\r\n" * 20, MalformedTrailerError),  # too many trailers
])
def test_malformed_framing(wire, error):
    _, _, exc = run("STREAMING-UNSIGNED-PAYLOAD-TRAILER", UNSIGNED, wire)
    assert isinstance(exc, error), exc


# --- plain bodies ------------------------------------------------------------------------------

BODY = b"Welcome to Amazon S3."
SHA = hashlib.sha256(BODY).hexdigest()
MD5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()


def _b64(algorithm: str, data: bytes) -> str:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(data)
    return base64.b64encode(hasher.digest()).decode()


def test_plain_signed_payload_with_md5_and_each_checksum():
    for algorithm in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256"):
        hdrs = {"Content-Length": str(len(BODY)), "Content-MD5": MD5, f"x-amz-checksum-{algorithm}": _b64(algorithm, BODY)}
        out, body, exc = run(SHA, hdrs, BODY, cuts=[3, 10])
        assert exc is None and out == BODY
        assert body.md5_hex == hashlib.md5(BODY).hexdigest()
        assert body.checksums == {algorithm: _b64(algorithm, BODY)} and body.checksum_algorithm == algorithm


def test_known_check_values():
    # the CRC catalogue check values over "123456789"
    assert checksums.decode_value(_b64("crc32c", b"123456789"), 4).hex() == "e3069283"
    assert checksums.decode_value(_b64("crc64nvme", b"123456789"), 8).hex() == "ae8b14860a799888"


@pytest.mark.parametrize("hdrs,error,message", [
    ({"Content-MD5": base64.b64encode(b"x" * 16).decode()}, errors.BadDigest, "Content-MD5 you specified did not match"),
    ({"x-amz-checksum-sha256": base64.b64encode(b"x" * 32).decode()}, errors.BadDigest, "The SHA256 you specified"),
    ({"x-amz-checksum-crc64nvme": base64.b64encode(b"x" * 8).decode()}, errors.BadDigest, "The CRC64NVME you"),
])
def test_plain_digest_mismatch(hdrs, error, message):
    out, _, exc = run(SHA, dict(hdrs, **{"Content-Length": str(len(BODY))}), BODY)
    assert isinstance(exc, error) and message in exc.text
    assert out != BODY  # the last piece was held back


def test_sha256_mismatch_holds_back_the_last_piece():
    big = b"q" * (3 * body_mod.PIECE_SIZE)
    out, _, exc = run("0" * 64, {"Content-Length": str(len(big))}, big)
    assert isinstance(exc, errors.XAmzContentSHA256Mismatch)
    assert exc.fields["S3ComputedContentSHA256"] == hashlib.sha256(big).hexdigest()
    assert len(out) == 2 * body_mod.PIECE_SIZE


@pytest.mark.parametrize("hdrs,error,message", [
    ({"Content-MD5": "not base64"}, errors.InvalidDigest, None),
    ({"Content-MD5": base64.b64encode(b"short").decode()}, errors.InvalidDigest, None),
    ({"x-amz-checksum-crc32": "AAAA"}, errors.InvalidRequest, "Value for x-amz-checksum-crc32 header is invalid."),
    ({"x-amz-checksum-crc32": _crc32(BODY), "x-amz-checksum-sha1": "AAAA"}, errors.InvalidRequest, "Expecting a single"),
    ({"x-amz-sdk-checksum-algorithm": "MD4"}, errors.InvalidRequest, "x-amz-sdk-checksum-algorithm header is invalid"),
    ({"x-amz-sdk-checksum-algorithm": "CRC32C", "x-amz-checksum-crc32": _crc32(BODY)}, errors.InvalidRequest,
     "x-amz-sdk-checksum-algorithm header is invalid"),
    ({"x-amz-trailer": "x-amz-checksum-crc32"}, errors.InvalidRequest, "x-amz-trailer"),  # no trailer in a plain body
    ({"x-amz-checksum-xxh3": "AAAA"}, errors.InvalidRequest, "is invalid"),
])
def test_malformed_digest_headers_fail_before_reading(hdrs, error, message):
    with pytest.raises(error, match=message):
        open_body(_ctx(SHA), headers(dict(hdrs, **{"Content-Length": "21"})), None)  # type: ignore[arg-type]


def test_sdk_algorithm_alone_is_computed_and_reported():
    out, body, exc = run("UNSIGNED-PAYLOAD", {"Content-Length": "21", "x-amz-sdk-checksum-algorithm": "SHA1"}, BODY,
                         want_checksums=["crc32c"])
    assert exc is None and body.checksums == {"sha1": _b64("sha1", BODY), "crc32c": _b64("crc32c", BODY)}


def test_plain_short_body_is_incomplete():
    out, _, exc = run("UNSIGNED-PAYLOAD", {"Content-Length": "100"}, BODY)
    assert isinstance(exc, errors.IncompleteBody) and out == b""


def test_length_unknown_requires_length_but_streams():
    out, body, exc = run("UNSIGNED-PAYLOAD", {}, BODY)
    assert exc is None and out == BODY and body.size is None
    with pytest.raises(errors.MissingContentLength):
        body.require_length()


def test_empty_body_with_wrong_md5_raises():
    out, _, exc = run("UNSIGNED-PAYLOAD", {"Content-Length": "0", "Content-MD5": MD5}, b"")
    assert isinstance(exc, errors.BadDigest) and out == b""


def test_memory_stays_flat_with_huge_client_chunks():
    """64 MiB in two 32 MiB signed chunks: the decoder never holds a chunk (tracemalloc peak)."""
    chunk = 32 << 20

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        reader = aiohttp.StreamReader(_FlowControl(), 2**16, loop=loop)  # type: ignore[arg-type]
        received = 0
        progress = asyncio.Event()

        def frames():
            block = b"m" * (1 << 20)
            sig = "0" * 64
            for _ in range(2):
                yield f"{chunk:x};chunk-signature={sig}\r\n".encode()
                for _ in range(chunk // len(block)):
                    yield block
                yield b"\r\n"
            yield f"0;chunk-signature={sig}\r\n\r\n".encode()

        async def produce() -> None:
            fed = 0
            for frame in frames():
                while fed - received > (4 << 20):
                    progress.clear()
                    await progress.wait()
                reader.feed_data(frame)
                fed += len(frame)
                await asyncio.sleep(0)
            reader.feed_eof()

        task = asyncio.create_task(produce())
        ctx = _ctx("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        tracemalloc.start()
        body = open_body(ctx, headers({"x-amz-decoded-content-length": str(2 * chunk)}), reader)
        try:
            async for piece in body:
                received += len(piece)
                progress.set()
        except errors.SignatureDoesNotMatch:
            pass  # the signatures are dummies: only the first chunk is decoded, and it is 32 MiB
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        progress.set()
        task.cancel()
        return received, peak

    received, peak = asyncio.run(main())
    assert received >= chunk - body_mod.PIECE_SIZE  # all of chunk 1 but the held-back piece
    assert peak < 12 << 20, peak
