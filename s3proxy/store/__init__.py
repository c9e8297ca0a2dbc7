"""The object store: the client's plaintext view of objects over a backend that holds only ciphertext.

`objects.ObjectStore` (single objects, copies, re-wraps, listings) with `multipart.MultipartUploads`;
`views` holds what both show and keep: client views, envelope helpers, caches.
"""

from .objects import ObjectStore
from .views import (
    CSE_HEADER,
    SMALL_BODY,
    Download,
    ListingCache,
    ObjectView,
    Stored,
    Written,
    client_side_format,
    open_checksums,
    seal_checksums,
    split_backend_metadata,
    to_backend_metadata,
)

__all__ = [
    "CSE_HEADER", "SMALL_BODY", "Download", "ListingCache", "ObjectStore", "ObjectView", "Stored", "Written",
    "client_side_format", "open_checksums", "seal_checksums", "split_backend_metadata", "to_backend_metadata",
]
