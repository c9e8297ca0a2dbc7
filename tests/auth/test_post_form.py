"""The POST Object form reader (s3proxy.auth.form) over aiohttp's own StreamReader, fed the bytes
clients send (RFC 7578 / RFC 2046 §5.1.1), in the pieces a network delivers them in."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy import errors
from s3proxy.auth.form import read_form

B = "6b1d8f2c5e4a9d30"
SMALL = 256  # what follows the file's part headers, up to this, is read at once (256 KiB in the proxy)


def body(fields: list[tuple[str, str]], file: bytes, *, filename: str | None = "f.txt", after: bytes = b"",
         end: bytes = b"--" + B.encode() + b"--\r\n") -> bytes:
    out = b""
    for name, value in fields:
        out += f'--{B}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    disposition = 'form-data; name="file"' + (f'; filename="{filename}"' if filename is not None else "")
    out += f"--{B}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
    return out + file + b"\r\n" + after + end


async def _read(data: bytes, piece: int, content_type: str = f"multipart/form-data; boundary={B}"):
    """The whole body fed in `piece`-byte chunks (each its own buffer in the reader), then read."""
    loop = asyncio.get_running_loop()
    stream = aiohttp.StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    for at in range(0, len(data), piece):
        stream.feed_data(data[at:at + piece])
    stream.feed_eof()
    form = await read_form(stream, content_type, len(data), small_body=SMALL)
    got = bytearray()
    while len(got) < form.size:  # 7 bytes a read: a delimiter in the file falls across reads
        got += await form.stream.readexactly(min(7, form.size - len(got)))
    return form, bytes(got)


def read(data: bytes, piece: int = 5, **kwargs):
    return asyncio.run(_read(data, piece, **kwargs))


def refused(data: bytes, piece: int = 5, **kwargs) -> errors.S3Error:
    with pytest.raises(errors.S3Error) as excinfo:
        read(data, piece, **kwargs)
    return excinfo.value


@pytest.mark.parametrize("size", [0, 1, SMALL - 20, SMALL + 1, 5000])  # read at once, and streamed
@pytest.mark.parametrize("piece", [1, 5, 4096])
def test_fields_and_file_come_out_as_sent(size, piece):
    file = os.urandom(size)
    form, got = read(body([("key", "up/${filename}"), ("X-Amz-Meta-A", "ü")], file, filename="dir\\photo.jpg"), piece)
    assert got == file and form.size == size
    assert form.fields == [("key", "up/photo.jpg"), ("X-Amz-Meta-A", "ü")]  # expanded; name after the last \\
    assert form.get("x-amz-meta-a") == "ü" and form.filename == "dir\\photo.jpg"


def test_without_a_filename_parameter_the_key_keeps_its_variable():
    form, _ = read(body([("key", "k-${filename}")], b"x", filename=None))
    assert form.get("key") == "k-${filename}"


def test_fields_after_a_small_file_are_ignored():
    extra = f'--{B}\r\nContent-Disposition: form-data; name="submit"\r\n\r\nUpload\r\n'.encode()
    form, got = read(body([("key", "k")], b"small", after=extra))
    assert got == b"small" and form.names() == ["key"]


def test_a_small_body_may_end_without_the_last_crlf():
    assert read(body([("key", "k")], b"abc", end=f"--{B}--".encode()))[1] == b"abc"


@pytest.mark.parametrize("piece", [1, 3, 4096])
def test_a_field_after_a_large_file_is_found_even_split_across_reads(piece):
    extra = f'--{B}\r\nContent-Disposition: form-data; name="submit"\r\n\r\nUpload\r\n'.encode()
    assert refused(body([("key", "k")], b"y" * 500, after=extra), piece).code == "MalformedPOSTRequest"


def test_a_large_file_must_end_with_the_close_delimiter():
    assert refused(body([("key", "k")], b"z" * 500, end=f"--{B}--".encode())).code == "MalformedPOSTRequest"
    assert refused(body([("key", "k")], b"z" * 500, end=f"--{B}--\r\nepilogue".encode())).code == "MalformedPOSTRequest"


def test_content_types():
    data = body([("key", "k")], b"x")
    assert read(data, content_type=f'multipart/form-data; boundary="{B}"')[1] == b"x"  # quoted
    err = refused(data, content_type="application/x-www-form-urlencoded")
    assert (err.code, err.status, err.fields["Condition"]) == (
        "PreconditionFailed", 412, "Bucket POST must be of the enclosure-type multipart/form-data")
    assert refused(data, content_type="multipart/form-data").code == "MalformedPOSTRequest"  # no boundary
    assert refused(data, content_type="multipart/form-data; boundary=" + "b" * 71).code == "MalformedPOSTRequest"


def test_the_fields_before_the_file_are_limited_to_20_kib():
    err = refused(body([("key", "k"), ("x-amz-meta-big", "v" * 20500)], b"x"), 4096)
    assert (err.code, err.status, err.fields) == ("MaxPostPreDataLengthExceeded", 400, {"MaxPostPreDataLengthBytes": "20480"})


def test_no_file_and_broken_forms():
    no_file = f'--{B}\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n--{B}--\r\n'.encode()
    err = refused(no_file)
    assert (err.code, err.text, err.fields["ArgumentName"]) == (
        "InvalidArgument",
        "POST requires exactly one file upload per request.",
        "file",
    )
    assert refused(b"garbage" + body([], b"x")).code == "MalformedPOSTRequest"  # not starting with the delimiter
    attachment = body([("key", "k")], b"x").replace(b'form-data; name="file"', b'attachment; name="file"')
    assert refused(attachment).code == "MalformedPOSTRequest"


VALID = body([("key", "k"), ("policy", "cG9saWN5")], b"file content " * 30)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.integers(1, 255), st.integers(0, len(VALID)), st.sampled_from([1, 7, 4096]))
def test_any_damaged_form_is_an_s3_4xx_or_reads_whole(at, flip, cut, piece):
    """A byte changed, then the body cut short (the declared length stays): the reader answers an
    S3 4xx error or hands on exactly the bytes it says; never another exception, never a hang."""
    damaged = bytearray(VALID)
    damaged[at] ^= flip
    damaged = bytes(damaged[:cut]) if cut else bytes(damaged)

    async def run():
        loop = asyncio.get_running_loop()
        stream = aiohttp.StreamReader(BaseProtocol(loop), 2**16, loop=loop)
        for i in range(0, len(damaged), piece):
            stream.feed_data(damaged[i:i + piece])
        stream.feed_eof()
        form = await read_form(stream, f"multipart/form-data; boundary={B}", len(VALID), small_body=SMALL)
        got = bytearray()
        while len(got) < form.size:
            got += await form.stream.readexactly(min(1000, form.size - len(got)))
        assert len(got) == form.size

    try:
        asyncio.run(asyncio.wait_for(run(), 5))
    except errors.S3Error as exc:
        assert 400 <= exc.status < 500, exc
