"""The fs backend's metadata index: one SQLite database holding buckets, object versions, uploads.

Keys live only here, as TEXT with BINARY collation (memcmp of UTF-8 = S3's listing order); they
never become file names. An object version row names its bytes as an ordered list of immutable
blob files `[[blob, size], ...]` (one blob for a PUT or copy, one per part after a multipart
upload). Every mutation is one transaction (WAL, synchronous=FULL) that returns the blobs it
made garbage; the caller unlinks them after the commit, so a crash leaves orphans, never holes.
All methods are blocking and serialised by one lock: call them from a worker thread.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from s3proxy import errors
from s3proxy.backends import common
from s3proxy.backends.base import BucketInfo, ObjectInfo, ObjectMeta, PartInfo, UploadInfo, WriteCondition
from s3proxy.private import prepare_sqlite

Blobs = list[tuple[str, int]]  # ordered (blob name, size)
# rows fetched per listing query: small first, since a delimited listing seeks often and reads little
def _batches() -> Iterator[int]:
    return itertools.chain((16, 128), itertools.repeat(1000))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created REAL NOT NULL, versioning TEXT);
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, bucket TEXT NOT NULL, key TEXT NOT NULL, vid TEXT NOT NULL,
    latest INTEGER NOT NULL, marker INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    mtime REAL NOT NULL, meta TEXT NOT NULL, blobs TEXT NOT NULL, tags TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS objects_version ON objects (bucket, key, vid);
CREATE UNIQUE INDEX IF NOT EXISTS objects_latest ON objects (bucket, key) WHERE latest = 1;
CREATE INDEX IF NOT EXISTS objects_live ON objects (bucket, key) WHERE latest = 1 AND marker = 0;
CREATE INDEX IF NOT EXISTS objects_history ON objects (bucket, key, seq);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, created REAL NOT NULL, meta TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS uploads_key ON uploads (bucket, key);
CREATE TABLE IF NOT EXISTS parts (
    upload TEXT NOT NULL, num INTEGER NOT NULL, etag TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
    blob TEXT NOT NULL, PRIMARY KEY (upload, num));
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
_COLUMNS = "seq, key, vid, latest, marker, size, etag, mtime, meta, blobs, tags"
# listings carry the user metadata too: the proxy's envelope gives plaintext sizes and ETags without a HEAD
_LISTED = ("seq, key, vid, latest, marker, size, etag, mtime, json_extract(meta, '$.storage_class'),"
           " json_extract(meta, '$.metadata'), json_extract(meta, '$.headers')")


@dataclass(frozen=True)
class Version:
    """One stored object version (or delete marker)."""

    seq: int
    key: str
    vid: str
    latest: bool
    marker: bool
    size: int
    etag: str
    mtime: float
    meta: ObjectMeta
    blobs: Blobs
    tags: list[tuple[str, str]]

    def info(self, *, with_meta: bool = True) -> ObjectInfo:
        meta = self.meta if with_meta else ObjectMeta()
        return ObjectInfo(self.key, self.size, self.etag, common.from_epoch(self.mtime), meta, self.vid,
                          self.meta.storage_class or "STANDARD", self.latest, self.marker)


@dataclass(frozen=True)
class NewVersion:
    """What a write stores; the version id and latest flag are decided by the index."""

    key: str
    size: int
    etag: str
    mtime: float
    meta: ObjectMeta
    blobs: Blobs
    tags: list[tuple[str, str]]
    marker: bool = False


class Index:
    """The SQLite index of one fs backend root."""

    def __init__(self, path: Path, rand: common.Rand, *, durable: bool = True) -> None:
        self._db = sqlite3.connect(prepare_sqlite(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._rand = rand
        self._ids = common.VersionIds(self._setting("version-id-key", lambda: rand(16)))

    def _setting(self, name: str, make: Callable[[], bytes]) -> bytes:
        """A value made once per index and kept in it."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return bytes(row[0])
            value = make()
            db.execute("INSERT INTO settings VALUES (?, ?)", (name, value))
            return value

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def locked(self) -> contextlib.AbstractContextManager[object]:
        """Hold the index still (e.g. to look up a row and pin its blobs as one step)."""
        return self._lock

    # buckets

    def list_buckets(self) -> list[BucketInfo]:
        with self._tx() as db:
            rows = db.execute("SELECT name, created FROM buckets ORDER BY name").fetchall()
        return [BucketInfo(n, common.from_epoch(c)) for n, c in rows]

    def create_bucket(self, bucket: str, created: float) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone():
                raise errors.BucketAlreadyOwnedByYou(BucketName=bucket)
            db.execute("INSERT INTO buckets (name, created) VALUES (?, ?)", (bucket, created))

    def delete_bucket(self, bucket: str) -> Blobs:
        """DeleteBucket: refused while objects remain; unfinished uploads go with it (as on AWS)."""
        with self._tx() as db:
            _versioning(db, bucket)
            if db.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (bucket,)).fetchone():
                raise errors.BucketNotEmpty(BucketName=bucket)
            garbage: Blobs = []
            for (upload_id,) in db.execute("SELECT id FROM uploads WHERE bucket = ?", (bucket,)).fetchall():
                garbage += [(blob, p.size) for p, blob in _parts(db, upload_id)]
                self._drop_upload(db, upload_id)
            db.execute("DELETE FROM buckets WHERE name = ?", (bucket,))
            return garbage

    def versioning(self, bucket: str) -> str | None:
        with self._tx() as db:
            return _versioning(db, bucket)

    def set_versioning(self, bucket: str, status: str) -> None:
        with self._tx() as db:
            _versioning(db, bucket)
            db.execute("UPDATE buckets SET versioning = ? WHERE name = ?", (status, bucket))

    # object versions

    def put(self, bucket: str, new: NewVersion, condition: WriteCondition | None = None) -> tuple[str | None, Blobs]:
        """Store `new` as the latest version, if `condition` holds (checked in the same transaction);
        (the version id S3 shows, blobs now garbage)."""
        with self._tx() as db:
            _check(db, bucket, new.key, condition)
            return self._put(db, bucket, new)

    def _put(self, db: sqlite3.Connection, bucket: str, new: NewVersion) -> tuple[str | None, Blobs]:
        status = _versioning(db, bucket)
        versioned = status == "Enabled"
        # a versioned write's id is its row's sequence number, sealed (common.VersionIds): known once inserted
        vid = "pending-" + common.new_id(self._rand) if versioned else common.NULL_VERSION
        garbage = self._remove(db, bucket, new.key, vid)
        db.execute("UPDATE objects SET latest = 0 WHERE bucket = ? AND key = ? AND latest = 1", (bucket, new.key))
        inserted = db.execute(
            "INSERT INTO objects (bucket, key, vid, latest, marker, size, etag, mtime, meta, blobs, tags)"
            " VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
            (bucket, new.key, vid, int(new.marker), new.size, new.etag, new.mtime, _dump_meta(new.meta),
             json.dumps(new.blobs), json.dumps(new.tags)),
        )
        if versioned:
            vid = self._ids.make(inserted.lastrowid or 0)
            db.execute("UPDATE objects SET vid = ? WHERE seq = ?", (vid, inserted.lastrowid))
        return common.shown_version_id(status, vid), garbage

    def delete(self, bucket: str, key: str, mtime: float) -> tuple[str | None, bool, Blobs]:
        """DeleteObject without a version id: (version id, delete marker?, garbage)."""
        with self._tx() as db:
            if _versioning(db, bucket) is None:
                return None, False, self._remove(db, bucket, key, common.NULL_VERSION)
            marker = NewVersion(key, 0, "", mtime, ObjectMeta(), [], [], marker=True)
            vid, garbage = self._put(db, bucket, marker)
            return vid, True, garbage

    def delete_version(self, bucket: str, key: str, vid: str) -> tuple[bool, Blobs]:
        """DeleteObject of one version: (was it a delete marker?, garbage)."""
        with self._tx() as db:
            _versioning(db, bucket)
            row = _find(db, bucket, key, vid)
            return (bool(row and row.marker)), self._remove(db, bucket, key, vid)

    def _remove(self, db: sqlite3.Connection, bucket: str, key: str, vid: str) -> Blobs:
        row = _find(db, bucket, key, vid)
        if row is None:
            return []
        db.execute("DELETE FROM objects WHERE seq = ?", (row.seq,))
        if row.latest:
            db.execute(
                "UPDATE objects SET latest = 1 WHERE seq = (SELECT max(seq) FROM objects WHERE bucket = ? AND key = ?)",
                (bucket, key),
            )
        return row.blobs

    def get(self, bucket: str, key: str, vid: str | None) -> tuple[Version, str | None]:
        """The readable version (latest if vid is None) and the version id S3 shows. Hold locked()."""
        status = _versioning(self._db, bucket)
        if vid is None:
            row = _first(self._db, f"SELECT {_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND latest = 1",
                         (bucket, key))
            if row is None or row.marker:
                raise errors.NoSuchKey(Key=key)
        else:
            row = _find(self._db, bucket, key, vid)
            if row is None:
                raise errors.NoSuchVersion(Key=key, VersionId=vid)
            if row.marker:
                raise errors.MethodNotAllowed()
        return row, common.shown_version_id(status, row.vid)

    def replace_meta(self, bucket: str, key: str, meta: ObjectMeta, if_etag: str) -> str | None:
        """Metadata-only update of the latest version when its ETag matches; its shown version id."""
        with self._tx() as db:
            row, shown = self.get(bucket, key, None)
            if row.etag != if_etag:
                raise errors.PreconditionFailed(Condition="x-amz-copy-source-If-Match")
            db.execute("UPDATE objects SET meta = ? WHERE seq = ?", (_dump_meta(meta), row.seq))
            return shown

    def set_tags(self, bucket: str, key: str, vid: str | None, tags: Sequence[tuple[str, str]]) -> None:
        with self._tx():
            row, _ = self.get(bucket, key, vid)
            self._db.execute("UPDATE objects SET tags = ? WHERE seq = ?", (json.dumps(list(tags)), row.seq))

    # listings (hold locked() while iterating)

    def seek_live(self, bucket: str) -> Callable[[str, bool], Iterator[tuple[str, ObjectInfo]]]:
        _versioning(self._db, bucket)
        sql = (f"SELECT {_LISTED} FROM objects WHERE bucket = ? AND latest = 1 AND marker = 0 AND key {{}} ?"
               " ORDER BY key LIMIT ?")

        def seek(start: str, inclusive: bool) -> Iterator[tuple[str, ObjectInfo]]:
            op = ">=" if inclusive else ">"
            for batch in _batches():
                rows = self._db.execute(sql.format(op), (bucket, start, batch)).fetchall()
                yield from ((r[1], _listed(r, with_version=False)) for r in rows)
                if len(rows) < batch:
                    return
                start, op = rows[-1][1], ">"

        return seek

    def seek_versions(self, bucket: str) -> Callable[[str, bool], Iterator[tuple[str, ObjectInfo]]]:
        _versioning(self._db, bucket)

        def seek(start: str, inclusive: bool) -> Iterator[tuple[str, ObjectInfo]]:
            where = "key >= ?" if inclusive else "key > ?"
            args: tuple[str | int, ...] = (start,)
            for batch in _batches():
                rows = self._db.execute(f"SELECT {_LISTED} FROM objects WHERE bucket = ? AND ({where})"
                                        " ORDER BY key, seq DESC LIMIT ?", (bucket, *args, batch)).fetchall()
                yield from ((r[1], _listed(r)) for r in rows)
                if len(rows) < batch:
                    return
                where, args = "key > ? OR (key = ? AND seq < ?)", (rows[-1][1], rows[-1][1], rows[-1][0])

        return seek

    def versions_after(self, bucket: str, key: str, vid: str) -> list[tuple[str, ObjectInfo]]:
        """The versions of `key` after version `vid` in listing order (older ones), for a
        version-id-marker. The marker is a position, found even when its version was deleted
        meanwhile: by the row, else by the id itself (common.VersionIds); an id that says no
        position ("null", or an id from before sealed ids) resumes at the key's newest version,
        so nothing is skipped. Hold locked()."""
        row = _find(self._db, bucket, key, vid)
        bound = row.seq if row is not None else self._ids.position(vid)
        rows = _all(self._db, f"SELECT {_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND seq < ?"
                    " ORDER BY seq DESC", (bucket, key, bound if bound is not None else 2**63 - 1))
        return [(r.key, r.info(with_meta=False)) for r in rows]

    # multipart

    def create_upload(self, bucket: str, key: str, upload_id: str, created: float, meta: ObjectMeta) -> None:
        with self._tx() as db:
            _versioning(db, bucket)
            db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?)", (upload_id, bucket, key, created, _dump_meta(meta)))

    def put_part(self, bucket: str, key: str, upload_id: str, part: PartInfo, blob: str) -> Blobs:
        with self._tx() as db:
            _upload(db, bucket, key, upload_id)
            old = db.execute("SELECT blob, size FROM parts WHERE upload = ? AND num = ?",
                             (upload_id, part.part_number)).fetchall()
            db.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?)",
                       (upload_id, part.part_number, part.etag, part.size, part.last_modified.timestamp(), blob))
            return [(b, s) for b, s in old]

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        with self._tx() as db:
            _upload(db, bucket, key, upload_id)
            return [p for p, _ in _parts(db, upload_id)]

    def complete(self, bucket: str, key: str, upload_id: str, requested: Sequence[tuple[int, str]],
                 min_part_size: int, mtime: float, condition: WriteCondition | None = None) -> tuple[str, str | None, Blobs]:
        """CompleteMultipartUpload: the object is its parts' blobs, in order (no bytes copied). A
        `condition` that fails leaves the upload as it was."""
        with self._tx() as db:
            meta = _upload(db, bucket, key, upload_id)
            _check(db, bucket, key, condition)
            parts = {p.part_number: (p, blob) for p, blob in _parts(db, upload_id)}
            numbers = common.check_complete(requested, {n: (p.etag, p.size) for n, (p, _) in parts.items()},
                                            min_part_size)
            blobs = [(parts[n][1], parts[n][0].size) for n in numbers]
            unused = [(b, p.size) for n, (p, b) in parts.items() if n not in set(numbers)]
            etag = common.multipart_etag([parts[n][0].etag for n in numbers])
            self._drop_upload(db, upload_id)
            new = NewVersion(key, sum(s for _, s in blobs), etag, mtime, meta, blobs,
                             common.parse_tagging(meta.tagging))
            vid, garbage = self._put(db, bucket, new)
            return etag, vid, garbage + unused

    def abort(self, bucket: str, key: str, upload_id: str) -> Blobs:
        with self._tx() as db:
            _upload(db, bucket, key, upload_id)
            garbage = [(blob, p.size) for p, blob in _parts(db, upload_id)]
            self._drop_upload(db, upload_id)
            return garbage

    def _drop_upload(self, db: sqlite3.Connection, upload_id: str) -> None:
        db.execute("DELETE FROM parts WHERE upload = ?", (upload_id,))
        db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def list_uploads(self, bucket: str, prefix: str) -> list[UploadInfo]:
        with self._tx() as db:
            _versioning(db, bucket)
            rows = db.execute("SELECT key, id, created FROM uploads WHERE bucket = ? AND substr(key, 1, ?) = ?"
                              " ORDER BY key, created", (bucket, len(prefix), prefix)).fetchall()
        return [UploadInfo(k, i, common.from_epoch(c)) for k, i, c in rows]

    # recovery

    def referenced_blobs(self) -> set[str]:
        """Every blob a row names (the rest, after a crash, are orphans)."""
        with self._tx() as db:
            names = {b for (b,) in db.execute("SELECT blob FROM parts")}
            for (blobs,) in db.execute("SELECT blobs FROM objects WHERE marker = 0"):
                names.update(name for name, _ in json.loads(blobs))
        return names


def _versioning(db: sqlite3.Connection, bucket: str) -> str | None:
    row = db.execute("SELECT versioning FROM buckets WHERE name = ?", (bucket,)).fetchone()
    if row is None:
        raise errors.NoSuchBucket(BucketName=bucket)
    versioning: str | None = row[0]
    return versioning


def _check(db: sqlite3.Connection, bucket: str, key: str, condition: WriteCondition | None) -> None:
    """A conditional write's condition against the current object (a delete marker is none)."""
    if condition is not None:
        row = db.execute("SELECT etag, marker FROM objects WHERE bucket = ? AND key = ? AND latest = 1", (bucket, key)).fetchone()
        common.check_condition(condition, row[0] if row is not None and not row[1] else None, key)


def _upload(db: sqlite3.Connection, bucket: str, key: str, upload_id: str) -> ObjectMeta:
    _versioning(db, bucket)
    row = db.execute("SELECT meta FROM uploads WHERE id = ? AND bucket = ? AND key = ?",
                     (upload_id, bucket, key)).fetchone()
    if row is None:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return _load_meta(row[0])


def _parts(db: sqlite3.Connection, upload_id: str) -> list[tuple[PartInfo, str]]:
    rows = db.execute("SELECT num, etag, size, mtime, blob FROM parts WHERE upload = ? ORDER BY num", (upload_id,))
    return [(PartInfo(n, e, s, common.from_epoch(m)), b) for n, e, s, m, b in rows]


def _find(db: sqlite3.Connection, bucket: str, key: str, vid: str) -> Version | None:
    return _first(db, f"SELECT {_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND vid = ?", (bucket, key, vid))


def _first(db: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> Version | None:
    rows = _all(db, sql, args)
    return rows[0] if rows else None


def _all(db: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> list[Version]:
    return [_version(r) for r in db.execute(sql, args).fetchall()]


def _version(r: tuple) -> Version:  # type: ignore[type-arg]
    seq, key, vid, latest, marker, size, etag, mtime, meta, blobs, tags = r
    return Version(seq, key, vid, bool(latest), bool(marker), size, etag, mtime, _load_meta(meta),
                   [(b, s) for b, s in json.loads(blobs)], [(k, v) for k, v in json.loads(tags)])


def _listed(r: tuple, with_version: bool = True) -> ObjectInfo:  # type: ignore[type-arg]
    """A listing's ObjectInfo (user metadata and content headers: what the metadata MAC covers) from a
    row of _LISTED columns."""
    _, key, vid, latest, marker, size, etag, mtime, storage_class, metadata, headers = r
    meta = ObjectMeta(json.loads(metadata), json.loads(headers) if headers else {}) if metadata else ObjectMeta()
    return ObjectInfo(key, size, etag, common.from_epoch(mtime), meta, version_id=vid if with_version else None,
                      storage_class=storage_class or "STANDARD", is_latest=bool(latest), delete_marker=bool(marker))


def _dump_meta(meta: ObjectMeta) -> str:
    return json.dumps({"metadata": dict(meta.metadata), "headers": dict(meta.headers), "tagging": meta.tagging,
                       "storage_class": meta.storage_class})


def _load_meta(text: str) -> ObjectMeta:
    d = json.loads(text)
    return ObjectMeta(d["metadata"], d["headers"], d.get("tagging"), d.get("storage_class"))
