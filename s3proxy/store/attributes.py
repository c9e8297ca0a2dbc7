"""What GetObjectAttributes shows of an object: HeadObject's view and, for a multipart object,
its parts (plaintext sizes, and the flexible checksums each part was uploaded with).

The view comes from `ObjectStore.head_object`, so the SSE-C rules are HEAD's (and GET's): an
SSE-C object needs its key, a wrong key is refused. Part checksums are sealed under the data key
(as an object's own checksums are), so showing them opens the key through the object's mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from .. import errors
from ..format import envelope as fmt
from ..format.envelope import KEY_MPU
from ..modes.base import ObjectRef
from ..modes.resolve import ModeResolver
from .views import ObjectView, open_checksums

if TYPE_CHECKING:
    from .objects import ObjectStore


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    checksums: Mapping[str, str] = field(default_factory=dict)  # algorithm -> base64 value


@dataclass(frozen=True)
class Attributes:
    view: ObjectView  # its headers carry x-amz-checksum-* when checksums were asked for
    parts: tuple[Part, ...] | None  # None: not a multipart object


async def object_attributes(
    store: "ObjectStore", ref: ObjectRef, version_id: str | None, keys: ModeResolver, *, checksums: bool, parts: bool
) -> Attributes:
    view = await store.head_object(ref, version_id, keys, checksums=checksums)
    if view.delete_marker or not parts:
        return Attributes(view, None)
    stored = await store.stored(await store.backend.head_object(ref.bucket, ref.key, version_id or view.version_id))
    if stored.etag != view.etag:  # replaced between the two looks: never describe two objects as one
        raise errors.PreconditionFailed("The object was replaced while it was being read; retry the request.")
    if not stored.fields.get(fmt.KEY_PARTS) or KEY_MPU not in stored.fields:
        return Attributes(view, None)
    record = await store.records.get(f"parts/{stored.fields[KEY_MPU]}", immutable=True)
    sealed: Mapping[str, str] = record.get("checksums", {}) if isinstance(record, dict) else {}
    key = await keys.for_stored(stored.fields).unseal(ref, stored.fields) if sealed else b""
    listed = tuple(
        Part(number, size, open_checksums(key, sealed.get(str(number))) if sealed else {})
        for number, size in fmt.decode_parts(stored.fields[fmt.KEY_PARTS])
    )
    return Attributes(view, listed)
