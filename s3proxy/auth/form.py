"""The multipart/form-data body of a POST Object (a browser upload), read as a stream.

The fields before the file are read whole (S3 caps them, boundaries and part headers included,
at 20 KiB: MaxPostPreDataLengthExceeded); the part named `file` is the object, and is never read
whole: `Form.stream` hands it on, exactly as many bytes as it has, to the same verified-body and
encrypt path a PutObject takes. Those bytes must be known before the first is stored (the
backend is told the length up front), so the file's length is found from the request's:

* when what follows the file's part headers is small (`small_body`), it is read at once and the
  file ends at the first delimiter; fields after the file are ignored, as S3 ignores them;
* otherwise the file must be the last field and the body must end with the close delimiter
  (CRLF `--boundary--` CRLF, what browsers, requests, curl and Go write): the file is what lies
  between. A delimiter inside that span (a field after the file) or any other ending is
  MalformedPOSTRequest, found before the last byte is released, so nothing is stored.

RFC 7578 and RFC 2046 §5.1.1 (boundaries of 1-70 characters, a body starting with the first
delimiter, part headers in US-ASCII); parts are named by the `name` parameter of a `form-data`
Content-Disposition, compared without regard to case as S3 compares field names.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import http_exceptions

from .. import errors

SMALL_FILE = 256 * 1024  # what follows the file's part headers, up to this, is read at once
MAX_PRE_DATA = 20 * 1024  # S3: "The form data and boundaries (excluding the contents of the file) cannot exceed 20KB."
FORM_TYPE = "multipart/form-data"
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# a parameter's value is a token or a quoted string taken as it stands: browsers send file names with raw
# backslashes (Windows paths) and write a quote as %22 (WHATWG HTML), never as a quoted-pair
_PARAM = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("[^"]*"|[^;]*)')


class Source(Protocol):
    """What the form is read from: aiohttp's StreamReader (request.content)."""

    async def readexactly(self, n: int) -> bytes: ...

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes: ...


def malformed() -> errors.S3Error:
    return errors.MalformedPOSTRequest()


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data Content-Type. S3: any other type is 412 with this Condition."""
    kind, _, params = (content_type or "").partition(";")
    if kind.strip().lower() != FORM_TYPE:
        raise errors.PreconditionFailed(Condition="Bucket POST must be of the enclosure-type multipart/form-data")
    found = {name.lower(): _unquote(value.strip()) for name, value in _PARAM.findall(";" + params)}
    boundary = found.get("boundary", "")
    if not _BOUNDARY.fullmatch(boundary):
        raise malformed()
    return boundary.encode("ascii")


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


@dataclass
class Form:
    """The fields before the file, and the file itself, streamed."""

    fields: list[tuple[str, str]]  # (name as sent, value) in form order, `${filename}` expanded
    filename: str | None  # the file part's filename parameter (None: it had none)
    size: int  # the file's length in bytes
    stream: FileStream
    pre_data: int = 0  # bytes before the file's content
    _by_name: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.fields:
            self._by_name.setdefault(name.lower(), value)

    def get(self, name: str) -> str | None:
        """A field's value (the first, by case-insensitive name), or None."""
        return self._by_name.get(name.lower())

    def names(self) -> list[str]:
        return [name for name, _ in self.fields]


async def read_form(source: Source, content_type: str | None, content_length: int | None, *,
                    small_body: int, max_pre_data: int = MAX_PRE_DATA) -> Form:
    """Read the fields up to the part named `file`; the file is then ready on `Form.stream`."""
    boundary = boundary_of(content_type)
    if content_length is None:
        raise errors.MissingContentLength()
    pre = _Pre(source, max_pre_data)
    delimiter = b"\r\n--" + boundary
    first = await pre.line()
    if first.rstrip(b" \t\r\n") != b"--" + boundary:  # the body starts with the first delimiter
        raise malformed()
    fields: list[tuple[str, str]] = []
    while True:
        name, filename = await _part_headers(pre)
        if name.lower() == "file":
            break
        value = await pre.until(delimiter)
        try:
            fields.append((name, value.decode("utf-8")))
        except UnicodeDecodeError:
            raise malformed() from None
        after = await pre.exactly(2)
        if after == b"--":  # the close delimiter, and no file
            raise errors.InvalidArgument(
                "POST requires exactly one file upload per request.", ArgumentName="file", ArgumentValue="0"
            )
        if after != b"\r\n":
            raise malformed()
    left = content_length - pre.consumed
    if left < 0:
        raise errors.IncompleteBody()
    if left <= small_body:
        data = await _exactly(source, left)
        end = data.find(delimiter)
        if end < 0 or data[end + len(delimiter):end + len(delimiter) + 2] not in (b"--", b"\r\n"):
            raise malformed()
        stream = FileStream(None, end, b"", delimiter, data[:end])
    else:
        tail = delimiter + b"--\r\n"
        stream = FileStream(source, left - len(tail), tail, delimiter)
    if filename is not None:
        base = re.split(r"[/\\]", filename)[-1]
        fields = [(n, v.replace("${filename}", base)) for n, v in fields]
    return Form(fields, filename, stream.size, stream, pre.consumed)


async def _part_headers(pre: _Pre) -> tuple[str, str | None]:
    """(name, filename) of a form-data part, from its header lines."""
    disposition = None
    while line := (await pre.line()).rstrip(b"\r\n"):
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")  # browsers send file names in UTF-8; names stay strict below
        header, colon, value = text.partition(":")
        if not colon:
            raise malformed()
        if header.strip().lower() == "content-disposition":
            disposition = value.strip()
    if disposition is None:
        raise malformed()
    kind, _, params = disposition.partition(";")
    if kind.strip().lower() != "form-data":
        raise malformed()
    found = {n.lower(): _unquote(v.strip()) for n, v in _PARAM.findall(";" + params)}
    if not found.get("name"):
        raise malformed()
    return found["name"], found.get("filename")


class _Pre:
    """The bytes before the file, counted against S3's limit."""

    def __init__(self, source: Source, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.consumed = 0

    def _count(self, data: bytes) -> bytes:
        self.consumed += len(data)
        if self.consumed > self.limit:
            raise errors.MaxPostPreDataLengthExceeded(MaxPostPreDataLengthBytes=str(self.limit))
        return data

    async def line(self) -> bytes:
        data = await self.until(b"\r\n")
        return data + b"\r\n"

    async def until(self, separator: bytes) -> bytes:
        """The bytes before `separator` (consumed with it)."""
        room = self.limit - self.consumed + len(separator)
        try:
            data = await self.source.readuntil(separator, max_size=max(room, len(separator)))
        except (http_exceptions.LineTooLong, ValueError):
            raise errors.MaxPostPreDataLengthExceeded(MaxPostPreDataLengthBytes=str(self.limit)) from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise errors.IncompleteBody() from None
        self._count(data)
        if not data.endswith(separator):
            raise malformed()  # the body ended first
        return data[: -len(separator)]

    async def exactly(self, n: int) -> bytes:
        return self._count(await _exactly(self.source, n))


async def _exactly(source: Source, n: int) -> bytes:
    try:
        return await source.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError):
        raise errors.IncompleteBody() from None


class FileStream:
    """The file's bytes as a body stream (the shape `auth.body.open_body` reads): `size` bytes, then
    the `tail` the body must end with; a `delimiter` inside the file means the form was not what its
    length implied. Either is MalformedPOSTRequest, raised by the read that would hand on the last
    byte, so the body reader never releases it."""

    def __init__(self, source: Source | None, size: int, tail: bytes, delimiter: bytes, data: bytes = b"") -> None:
        if size < 0:
            raise malformed()
        self._source = source
        self.size = size
        self._tail = tail
        self._delimiter = delimiter
        self._data = memoryview(data)  # when the file was read whole
        self._left = size
        self._overlap = b""  # the last bytes read, to see a delimiter split between two reads

    async def readexactly(self, n: int) -> bytes:
        n = min(n, self._left)
        if self._source is None:
            piece = bytes(self._data[:n])
            self._data = self._data[n:]
        else:
            piece = await _exactly(self._source, n)
            keep = len(self._delimiter) - 1
            if self._delimiter in piece or self._delimiter in self._overlap + piece[:keep]:
                raise malformed()
            self._overlap = piece[-keep:] if len(piece) >= keep else (self._overlap + piece)[-keep:]
        self._left -= n
        if self._left == 0 and self._source is not None:
            if await _exactly(self._source, len(self._tail)) != self._tail:
                raise malformed()
            self._source = None  # read to its end
        return piece

    async def read(self, n: int = -1) -> bytes:
        return await self.readexactly(self._left if n < 0 else n)

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes:
        raise malformed()  # a file is never aws-chunked
