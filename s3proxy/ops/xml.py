"""S3 XML bodies: render response documents and parse request documents safely: incrementally,
within per-document limits, in slices small enough that one document never stalls other clients."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from xml.parsers import expat
from xml.parsers.expat import ExpatError

import xmltodict

from .. import errors

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def render(root: str, body: Mapping[str, Any], *, namespace: str | None = S3_NS) -> bytes:
    """An XML document `<root xmlns=...>body</root>`; lists repeat their element, None is omitted."""
    content = {k: v for k, v in body.items() if v is not None}
    if namespace:
        content = {"@xmlns": namespace, **content}
    text: str = xmltodict.unparse({root: _clean(content)}, full_document=True, short_empty_elements=False)
    text = text.replace('<?xml version="1.0" encoding="utf-8"?>', '<?xml version="1.0" encoding="UTF-8"?>', 1)
    # bytes a client sent that were not UTF-8 (kept escaped by aiohttp) are shown escaped, not crashed on
    return text.encode("utf-8", "backslashreplace")


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return iso8601(value)
    return value


def iso8601(when: dt.datetime) -> str:
    """S3's timestamp form in XML: 2009-10-12T17:50:30.000Z."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Limits:
    """What one request document may hold: bytes, elements in all, depth, and how many of its
    root's children may share the one repeated name (`repeated`: (name, most))."""

    max_bytes: int
    max_elements: int
    repeated: tuple[str, int] | None = None
    max_depth: int = 8


# S3: DeleteObjects names at most 1,000 keys and CompleteMultipartUpload at most 10,000 parts;
# past either the document is MalformedXML. The byte caps fit those counts with room: 1,000
# objects whose 1,024-byte keys need a 5-character escape for every byte, and 10,000 parts that
# carry all five checksum elements. Other request documents (tagging, versioning, encryption,
# CreateBucket) take a few KiB at most.
SMALL = Limits(max_bytes=64 * 1024, max_elements=1024)
DOCUMENTS = {
    "Delete": Limits(max_bytes=6 * 1024 * 1024, max_elements=1000 * 8 + 16, repeated=("Object", 1000)),
    "CompleteMultipartUpload": Limits(max_bytes=6 * 1024 * 1024, max_elements=10_000 * 10 + 16, repeated=("Part", 10_000)),
}
MAX_XML_BODY = max(limits.max_bytes for limits in DOCUMENTS.values())
SLICE = 64 * 1024  # bytes parsed between two turns of the event loop (~15 ms of parsing at most)


class Reader:
    """An incremental parse of one request document with root `root`, fed as its bytes arrive.

    The result is xmltodict's shape (attributes as `@name`, text beside children as `#text`, a
    repeated child as a list) built without recursion; unlike xmltodict, a leaf's text is kept as
    sent (text() strips it, verbatim() does not). Anything past the
    document's Limits, a DTD or entity declaration, or XML that is not well-formed is MalformedXML
    as soon as it is seen, without reading further."""

    def __init__(self, root: str, limits: Limits | None = None) -> None:
        self.root = root
        self.limits = limits or DOCUMENTS.get(root, SMALL)
        self.size = 0
        self.elements = 0
        self.repeats = 0
        self.result: dict[str, Any] | None = None
        self._stack: list[tuple[str, dict[str, Any] | None, list[str]]] = []
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.StartDoctypeDeclHandler = _refuse
        parser.EntityDeclHandler = _refuse
        parser.ExternalEntityRefHandler = _refuse
        self._parser = parser

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limits.max_bytes:
            raise errors.MalformedXML()
        self._parse(data, False)

    def close(self) -> dict[str, Any]:
        """The children of the root as nested dicts ({} for an empty root)."""
        self._parse(b"", True)
        if self.result is None:
            raise errors.MalformedXML()
        (name, content), = self.result.items()
        if name.split(":")[-1] != self.root:
            raise errors.MalformedXML()
        if content is None:
            return {}
        if not isinstance(content, dict):
            raise errors.MalformedXML()
        return content

    def _parse(self, data: bytes, final: bool) -> None:
        try:
            self._parser.Parse(data, final)
        except (ExpatError, ValueError, TypeError):
            raise errors.MalformedXML() from None

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        limits = self.limits
        self.elements += 1
        if self.elements > limits.max_elements or len(self._stack) >= limits.max_depth or self.result is not None:
            raise errors.MalformedXML()
        if limits.repeated is not None and len(self._stack) == 1 and name.split(":")[-1] == limits.repeated[0]:
            self.repeats += 1
            if self.repeats > limits.repeated[1]:
                raise errors.MalformedXML()
        self._stack.append((name, {"@" + k: v for k, v in attributes.items()} or None, []))

    def _text(self, data: str) -> None:
        if self._stack:
            self._stack[-1][2].append(data)

    def _end(self, name: str) -> None:
        _, item, texts = self._stack.pop()
        if item is not None:  # attributes or children: its own text (if any) is stripped
            text = "".join(texts).strip()
            if text:
                item["#text"] = text
            value: Any = item
        else:  # a leaf: its text as sent (an S3 key may begin or end with spaces)
            value = "".join(texts) or None
        if not self._stack:
            self.result = {name: value}
            return
        parent_name, parent, parent_texts = self._stack[-1]
        if parent is None:
            parent = {}
            self._stack[-1] = (parent_name, parent, parent_texts)
        if name not in parent:
            parent[name] = value
        elif isinstance(parent[name], list):
            parent[name].append(value)
        else:
            parent[name] = [parent[name], value]


def _refuse(*_: Any) -> NoReturn:
    raise errors.MalformedXML()


def parse(data: bytes, root: str) -> dict[str, Any]:
    """The children of `root` as nested dicts; MalformedXML for anything else (no DTDs, no entities)."""
    reader = Reader(root)
    reader.feed(data)
    return reader.close()


def as_list(value: Any) -> list[Any]:
    """xmltodict gives one child as a value and several as a list; always a list here."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def text(value: Any) -> str:
    """The text of a leaf element, surrounding whitespace stripped (names, numbers, flags)."""
    return verbatim(value).strip()


def verbatim(value: Any) -> str:
    """The text of a leaf element exactly as sent (object keys); a dict when it has attributes."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return str(value.get("#text", ""))
    if isinstance(value, list):
        raise errors.MalformedXML()
    return str(value)
