"""Calling an S3 operation as the front door does (ops.table: the internal bucket guarded), and
reading what it answers: a Reply's XML document and its streamed body."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import xmltodict

from s3proxy import ops
from s3proxy.ops.reply import Reply
from tests.twins import World, make_call


async def run(world: World, operation: str, bucket: str | None = None, key: str | None = None, **call: Any) -> Reply:
    """`operation` answering a Call for bucket/key (make_call's arguments: query, headers, body, ...)."""
    return await ops.table(world.services)[operation](make_call(bucket, key, **call))


# elements S3 repeats, as lists even when one is there (a Bucket only inside Buckets)
_LISTS = frozenset({"Contents", "CommonPrefixes", "Deleted", "Error", "Part", "Upload", "Version", "DeleteMarker", "Tag"})


def _repeated(path: Any, key: str, value: Any) -> bool:
    return key in _LISTS or (key == "Bucket" and bool(path) and path[-1][0] == "Buckets")


def doc(reply: Reply) -> dict[str, Any]:
    """The reply's XML document as a dict, under its root element (whose name is checked by the caller)."""
    assert isinstance(reply.body, bytes) and reply.headers["Content-Type"] == "application/xml", reply
    parsed = xmltodict.parse(reply.body, strip_whitespace=False, force_list=_repeated)
    (root, body), = parsed.items()
    body.pop("@xmlns", None)
    return {"_root": root, **body}


async def content(reply: Reply) -> bytes:
    """A streamed reply's body, drained (what respond.send would write)."""
    assert reply.streamed, reply
    data = b"".join([bytes(piece) async for piece in reply.body])  # type: ignore[union-attr]
    assert len(data) == reply.length
    return data


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


async def bucket_with(world: World, bucket: str, objects: dict[str, bytes], **put: Any) -> None:
    """A bucket holding `objects`, written through PutObject."""
    await run(world, "CreateBucket", bucket)
    for key, data in objects.items():
        await run(world, "PutObject", bucket, key, body=data, **put)
