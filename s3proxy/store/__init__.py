"""The object store: the client's plaintext view of objects over a backend that holds only ciphertext.

Three parts the operations talk to, composed by the application (app.py), and what they share:

    objects.ObjectStore          single objects: put, open/read, copy, re-wrap, delete, tags, listings
    multipart.MultipartUploads   create, parts, complete, abort, list
    buckets.Buckets              the backend's bucket calls and each bucket's default encryption
    catalog.Catalog              a stored object's envelope and client view, before any key is used
    views                        the values they pass: ObjectView, Download, Written; the listing cache
"""

from .buckets import Buckets
from .catalog import Catalog
from .multipart import MultipartUploads, Upload
from .objects import ObjectStore, Opened
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
    "Buckets", "CSE_HEADER", "Catalog", "MultipartUploads", "Opened", "SMALL_BODY", "Download", "ListingCache",
    "ObjectStore", "ObjectView", "Stored", "Upload", "Written",
    "client_side_format", "open_checksums", "seal_checksums", "split_backend_metadata", "to_backend_metadata",
]
