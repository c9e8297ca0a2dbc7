"""The incremental XML reader of request documents (s3proxy/http/xml.py, issue 14): the same shape as
xmltodict gave, the per-document limits enforced as the bytes arrive, and no DTDs."""

from __future__ import annotations

import pytest
import xmltodict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3proxy import errors
from s3proxy.ops import xml


def _xmltodict_children(doc: bytes) -> dict | None:
    """What the parser before this one (xmltodict) made of `doc`: the root's children, None for a
    root holding only text (which request documents never are: MalformedXML)."""
    (_, content), = xmltodict.parse(doc, disable_entities=True, process_namespaces=False).items()
    return None if isinstance(content, str) else content or {}


NAMES = st.sampled_from(["Object", "Key", "VersionId", "Quiet", "x:Key", "a"])
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6).map(
    lambda t: t.replace("&", "&amp;").replace("<", "&lt;")
)


def _element(name: str, attributes: list[tuple[str, str]], content: list[str]) -> str:
    attrs = "".join(f' {k}="{v}"' for k, v in attributes)
    return f"<{name}{attrs}>{''.join(content)}</{name}>"


ELEMENTS = st.recursive(
    TEXT,
    lambda inner: st.builds(_element, NAMES, st.lists(st.tuples(st.sampled_from(["id", "n"]), st.text("ab", max_size=3)),
                                                      max_size=2, unique_by=lambda kv: kv[0]), st.lists(inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(ELEMENTS, max_size=5).map(lambda children: f"<Delete>{''.join(children)}</Delete>".encode()))
def test_documents_read_as_xmltodict_read_them(doc):
    """The shape xmltodict gave, except that a leaf's text keeps its surrounding whitespace."""
    expected = _xmltodict_children(doc)
    if expected is None:
        with pytest.raises(errors.S3Error, match="not well-formed"):
            xml.parse(doc, "Delete")
    else:
        assert _stripped(xml.parse(doc, "Delete")) == expected


def _stripped(value):
    if isinstance(value, dict):
        return {k: v if k.startswith("@") else _stripped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stripped(v) for v in value]
    return value.strip() or None if isinstance(value, str) else value


def test_a_leaf_keeps_its_whitespace_and_text_strips_it():
    doc = xml.parse(
        b"<Delete><Quiet>\n true \n</Quiet><Object><Key> a </Key></Object><Object><Key> </Key></Object></Delete>", "Delete"
    )
    assert [xml.verbatim(o["Key"]) for o in doc["Object"]] == [" a ", " "]
    assert xml.text(doc["Quiet"]) == "true"


@pytest.mark.parametrize("pieces", [1, 7, 4096])
def test_a_document_fed_in_pieces_reads_as_a_whole(pieces):
    doc = (
        b'<Delete xmlns="u"><Quiet>true</Quiet>'
        + b"".join(b"<Object><Key>k%d &amp; \xc3\xa9</Key></Object>" % i for i in range(50))
        + b"</Delete>"
    )
    reader = xml.Reader("Delete")
    step = max(1, len(doc) // pieces)
    for start in range(0, len(doc), step):
        reader.feed(doc[start:start + step])
    assert _stripped(reader.close()) == _xmltodict_children(doc)


def _reads_until_refused(root: str, head: bytes, item: bytes, count: int) -> int:
    """Feeds `head` then `item` up to `count` times; how many items were fed when MalformedXML came."""
    reader = xml.Reader(root)
    reader.feed(head)
    for n in range(1, count + 1):
        try:
            reader.feed(item)
        except errors.S3Error as exc:
            assert exc.code == "MalformedXML"
            return n
    raise AssertionError("never refused")


def test_a_delete_document_is_refused_at_its_1001st_object_without_reading_on():
    assert _reads_until_refused("Delete", b"<Delete>", b"<Object><Key>k</Key></Object>", 100_000) == 1001


def test_a_complete_document_is_refused_at_its_10001st_part_without_reading_on():
    assert _reads_until_refused("CompleteMultipartUpload", b"<CompleteMultipartUpload>",
                                b"<Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>", 100_000) == 10_001


def test_the_limits_fit_what_s3_accepts():
    keys = b"".join(
        b"<Object><Key>%s</Key><VersionId>%s</VersionId></Object>" % (b"&amp;" * 1024, b"v" * 64) for _ in range(1000)
    )
    assert len(xml.parse(b"<Delete><Quiet>true</Quiet>" + keys + b"</Delete>", "Delete")["Object"]) == 1000
    checksums = b"".join(
        b"<Checksum%s>%s</Checksum%s>" % (n, b"A" * 44, n) for n in (b"CRC32", b"CRC32C", b"CRC64NVME", b"SHA1", b"SHA256")
    )
    parts = b"".join(b"<Part><PartNumber>%d</PartNumber><ETag>&quot;%s&quot;</ETag>%s</Part>" % (n, b"0" * 32, checksums)
                     for n in range(1, 10_001))
    assert (
        len(xml.parse(b"<CompleteMultipartUpload>" + parts + b"</CompleteMultipartUpload>", "CompleteMultipartUpload")["Part"])
        == 10_000
    )
    tags = b"".join(b"<Tag><Key>%s</Key><Value>%s</Value></Tag>" % (b"k" * 128, b"v" * 256) for _ in range(50))
    assert len(xml.parse(b"<Tagging><TagSet>" + tags + b"</TagSet></Tagging>", "Tagging")["TagSet"]["Tag"]) == 50


PAST_LIMITS = [
    (b"<Tagging>" + b" " * (64 * 1024) + b"</Tagging>", "a small document past 64 KiB"),
    (b"<Delete>" + b"<a>" * 9 + b"</a>" * 9 + b"</Delete>", "deeper than 8 levels"),
    (b"<Tagging>" + b"<a/>" * 1024 + b"</Tagging>", "more than 1,024 elements in a small document"),
    (b'<!DOCTYPE Delete [<!ELEMENT Delete ANY>]><Delete/>', "a DTD, even without entities"),
    (b"<Delete/><!-- after --><Delete/>", "a second root"),
    (b"", "nothing"),
]


@pytest.mark.parametrize("doc,why", PAST_LIMITS, ids=[why for _, why in PAST_LIMITS])
def test_documents_past_their_limits_are_malformed_xml(doc, why):
    root = b"Tagging" if doc.startswith(b"<Tagging") else b"Delete"
    with pytest.raises(errors.S3Error) as caught:
        xml.parse(doc, root.decode())
    assert caught.value.code == "MalformedXML", why


def test_delete_objects_deletes_the_key_named_with_its_spaces(tmp_path):
    """Over the wire: deleting " a" must not delete "a" (the parser before this one stripped keys)."""
    from tests.e2e.conftest import start_proxy

    from .harness import s3_client

    thread, endpoint = start_proxy(tmp_path, "fs", None)
    try:
        s3 = s3_client(endpoint.url)
        s3.create_bucket(Bucket="spaces")
        for key in ("a", " a", "a "):
            s3.put_object(Bucket="spaces", Key=key, Body=key.encode())
        deleted = s3.delete_objects(Bucket="spaces", Delete={"Objects": [{"Key": " a"}]})["Deleted"]
        assert [d["Key"] for d in deleted] == [" a"]
        assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="spaces")["Contents"]) == ["a", "a "]
    finally:
        thread.stop()
