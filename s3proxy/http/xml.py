"""S3 XML bodies: render response documents and parse request documents safely."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

import xmltodict
from xml.parsers.expat import ExpatError

from .. import errors

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BODY = 4 * 1024 * 1024  # CompleteMultipartUpload with 10,000 parts is about 1 MiB


def render(root: str, body: Mapping[str, Any], *, namespace: str | None = S3_NS) -> bytes:
    """An XML document `<root xmlns=...>body</root>`; lists repeat their element, None is omitted."""
    content = {k: v for k, v in body.items() if v is not None}
    if namespace:
        content = {"@xmlns": namespace, **content}
    text = xmltodict.unparse({root: _clean(content)}, full_document=True, short_empty_elements=False)
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
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse(data: bytes, root: str) -> dict[str, Any]:
    """The children of `root` as nested dicts; MalformedXML for anything else (no DTDs, no entities)."""
    if len(data) > MAX_XML_BODY:
        raise errors.MalformedXML()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise errors.MalformedXML()
    try:
        doc = xmltodict.parse(data, disable_entities=True, process_namespaces=False)
    except (ExpatError, ValueError, TypeError):
        raise errors.MalformedXML() from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise errors.MalformedXML()
    (name, content), = doc.items()
    if name.split(":")[-1] != root:
        raise errors.MalformedXML()
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise errors.MalformedXML()
    return content


def as_list(value: Any) -> list[Any]:
    """xmltodict gives one child as a value and several as a list; always a list here."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def text(value: Any) -> str:
    """The text of a leaf element (xmltodict gives a dict when the element has attributes)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return str(value.get("#text", ""))
    if isinstance(value, list):
        raise errors.MalformedXML()
    return str(value)
