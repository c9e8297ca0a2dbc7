"""ListObjectVersions through an S3 server, with markers that stay positions when versions vanish.

A tool that empties a bucket lists a page of versions, deletes every one, then asks for the next
page with the last one's key and version id as markers: markers that now name nothing. Servers
differ on what those mean (moto answers an empty page, and given a key-marker alone it drops the
first version at or after it), so the server is only asked to go on after a version it has just
shown to exist, or from the start of a prefix:

* A page stops one entry short of what was fetched. That entry, E, which the client has not seen
  and so not deleted, is where the next page starts: NextKeyMarker is its key (the first key not
  returned, as the S3 reference words it) and NextVersionIdMarker is `AT` + its version id, read
  back only here.
* Resuming at a key, that key's versions are listed by themselves (a listing with prefix=key shows
  that key first) and the page starts at E, or after a client's own version-id-marker. When that
  version is gone as well, every remaining version of the key is listed: a repeat, never a skip.
  The server then goes on after the key's last version, just seen.

Within a key, versions are put in S3's order (newest first) by time: moto writes all <Version>
elements of a page before all <DeleteMarker> ones. A delimited listing (partly common prefixes,
which name no version) keeps the server's own markers at its ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from s3proxy.backends.base import ObjectInfo, VersionListResult
from s3proxy.backends.common import resumes_inside

AT = "s3proxy-at:"  # a NextVersionIdMarker of this module: "start at this version" (S3's own markers mean "after")
PAGE = 1000

# (prefix, delimiter, key-marker, version-id-marker, max-keys) -> one page from the server
Fetch = Callable[[str, str, str, str, int], Awaitable[VersionListResult]]


async def list_versions(fetch: Fetch, prefix: str, delimiter: str, key_marker: str, version_id_marker: str,
                        max_keys: int) -> VersionListResult:
    if max_keys <= 0:
        return VersionListResult([], [], False, None, None)
    first: list[ObjectInfo] = []
    after = (key_marker, "" if version_id_marker.startswith(AT) else version_id_marker)
    if resumes_inside(key_marker, version_id_marker, prefix, delimiter):
        first, after = await _resume(fetch, key_marker, version_id_marker, max_keys + 1)
    if len(first) > max_keys:  # the marker key's own versions fill this page
        return _cut(first, [], max_keys, more=True)
    spare = 0 if delimiter else 1  # one entry past the page, to start the next one at
    page = await fetch(prefix, delimiter, *after, max(max_keys - len(first) + spare, 1))
    # after a key alone a server shows nothing of that key (S3), or all but its newest version (moto)
    rest = _in_order([i for i in page.versions if not after[0] or i.key > after[0]])
    if not delimiter:
        return _cut([*first, *rest], [], max_keys, more=page.is_truncated)
    if len(first) == max_keys:  # `page` only says whether anything follows
        return _cut(first, [], max_keys, more=bool(rest or page.common_prefixes))
    return VersionListResult([*first, *rest], list(page.common_prefixes), page.is_truncated,
                             page.next_key_marker, page.next_version_id_marker)


def _cut(entries: list[ObjectInfo], prefixes: list[str], max_keys: int, *, more: bool) -> VersionListResult:
    """A page of at most `max_keys` entries; an entry beyond them becomes the next page's start."""
    if len(entries) > max_keys:
        start = entries[max_keys]
        return VersionListResult(entries[:max_keys], prefixes, True, start.key, AT + (start.version_id or "null"))
    last = entries[-1] if entries and more else None
    return VersionListResult(entries, prefixes, more, last.key if last else None, last.version_id if last else None)


async def _resume(fetch: Fetch, key: str, version_id_marker: str, limit: int) -> tuple[list[ObjectInfo], tuple[str, str]]:
    """The versions of `key` this page starts with, and the (key, version) the server goes on after."""
    versions = await _versions_of(fetch, key)
    at = version_id_marker.startswith(AT)
    wanted = version_id_marker[len(AT):] if at else version_id_marker
    ids = [v.version_id or "null" for v in versions]
    first = versions[ids.index(wanted) + (0 if at else 1):] if wanted in ids else versions
    after = (key, ids[-1]) if versions else (key, "")  # a key alone: the one request moto may answer short
    return first[:limit], after


async def _versions_of(fetch: Fetch, key: str) -> list[ObjectInfo]:
    """Every version of `key`, newest first (prefix=key lists `key` before any longer key)."""
    found: list[ObjectInfo] = []
    markers = ("", "")
    while True:
        page = await fetch(key, "", *markers, PAGE)
        found += [v for v in page.versions if v.key == key]
        if not (page.is_truncated and page.next_key_marker == key and page.next_version_id_marker):
            return _in_order(found)
        markers = (key, page.next_version_id_marker)


def _in_order(entries: Sequence[ObjectInfo]) -> list[ObjectInfo]:
    """Listing order: by key, then newest first (stable, so the server's order breaks ties)."""
    return sorted(entries, key=lambda i: (i.key, -i.last_modified.timestamp()))
