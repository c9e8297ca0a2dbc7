"""The EncryptionMode seam and the envelope keys the modes own."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# the mode keys, defined with every other envelope key and exported from here to the modes
from ..format.envelope import KEY_BUCKET_KEY, KEY_CONTEXT, KEY_KMS_ID, KEY_MODE, KEY_WRAPPED, MODE_KEYS
from ..format.errors import IntegrityError

__all__ = [
    "KEY_BUCKET_KEY", "KEY_CONTEXT", "KEY_KMS_ID", "KEY_MODE", "KEY_WRAPPED", "MODE_KEYS",
    "EncryptionMode", "ObjectRef", "Sealed", "b64decode", "b64encode",
]


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str

    @property
    def arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}/{self.key}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"


@dataclass(frozen=True)
class Sealed:
    """A data key and the envelope fields that let its mode recover it later."""

    data_key: bytes = field(repr=False)
    fields: Mapping[str, str]


class EncryptionMode(Protocol):
    """One way of protecting data keys. Values, built per request by `resolve`."""

    @property
    def name(self) -> str:
        """The mode's KEY_MODE value."""
        ...

    async def seal(self, ref: ObjectRef, data_key: bytes | None = None) -> Sealed:
        """Wrap `data_key` (or a new one) for the object `ref`."""
        ...

    async def unseal(self, ref: ObjectRef, fields: Mapping[str, str]) -> bytes:
        """The data key of the object `ref` stored with `fields`."""
        ...

    def response_headers(self, fields: Mapping[str, str], *, on_write: bool) -> dict[str, str]:
        """What S3 echoes about this mode (on_write: PUT/POST/Copy/Create, which also echo the context)."""
        ...


def b64decode(value: str) -> bytes:
    """Strict standard base64; IntegrityError when a stored value is not."""
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError, ValueError):
        raise IntegrityError() from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
