"""Version-2 metadata: integrity sub-keys, the metadata MAC over every returned field, the sealed
SSE-S3 ETag, where the ETag lives, and the version-1 policy (FORMAT.md §1.1, §2, §11-14, §19.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from s3proxy.format.envelope import (
    KEY_CHECKSUMS,
    KEY_ETAG,
    KEY_MAC,
    KEY_METADATA_MAC,
    KEY_MPU,
    KEY_PARTS,
    KEY_SEALED_ETAG,
    KEY_SIZE,
    KEY_TRAILER,
    KEY_VERSION,
)
from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import expand, integrity_keys, open_sealed, seal
from s3proxy.format.metadata import (
    BOUND_HEADERS,
    ETAG_CLEAR,
    ETAG_RECORD,
    ETAG_SEALED,
    ETAG_TRAILER,
    etag_source,
    metadata_etag,
    metadata_mac,
    metadata_mac_input,
    object_arn,
    open_etag,
    open_metadata,
    seal_etag,
    seal_metadata,
)

IK = bytes(range(100, 132))
KEYS = integrity_keys(IK)
ARN = object_arn("bucket", "dir/key.html")
MD5 = hashlib.md5(b"hello").hexdigest()
HEADERS = {"content-type": "text/plain", "cache-control": "max-age=60"}


def base(**extra: str) -> dict[str, str]:
    """An SSE-KMS single-part object's stored metadata, before s3proxy-mm."""
    meta = {
        "s3proxy-v": "2", "s3proxy-cs": "65536", "s3proxy-size": "5", "s3proxy-mac": "A" * 43,
        "s3proxy-mode": "aws:kms", "s3proxy-key": "a2V5", "s3proxy-kid": "arn:aws:kms:us-east-1:000000000000:key/x",
        KEY_ETAG: "0123456789abcdef0123456789abcdef", "colour": "blue", "s3proxy-user-x": "escaped",
    }
    meta.update(extra)
    return meta


def sealed(meta: dict[str, str] | None = None, headers: dict[str, str] | None = None, arn: str = ARN) -> dict[str, str]:
    return seal_metadata(KEYS.meta, arn, base() if meta is None else meta, HEADERS if headers is None else headers)


# --- §2 keys ---
def test_integrity_sub_keys_are_distinct_hkdf_expansions_and_hidden() -> None:
    assert KEYS.meta == expand(IK, b"s3proxy.format@v2 ik-meta")
    assert len({KEYS.meta, KEYS.records, KEYS.audit, IK}) == 4
    assert IK.hex() not in repr(KEYS) and KEYS.meta.hex() not in repr(KEYS)
    with pytest.raises(ValueError):
        integrity_keys(IK[:16])


def test_seal_uses_a_fresh_salt_and_binds_label_and_aad() -> None:
    one, two = seal(IK, b"l", b"secret", b"aad"), seal(IK, b"l", b"secret", b"aad")
    assert one != two and one[:16] != two[:16] and len(one) == 16 + 6 + 16
    assert open_sealed(IK, b"l", one, b"aad", "f") == b"secret"
    for prk, label, data, aad in (
        (IK, b"m", one, b"aad"),
        (IK, b"l", one, b"aa"),
        (KEYS.meta, b"l", one, b"aad"),
        (IK, b"l", one[:31], b"aad"),
    ):
        with pytest.raises(IntegrityError) as caught:
            open_sealed(prk, label, data, aad, "f")
        assert caught.value.field == "f"


def test_integrity_error_field_is_for_the_log_only() -> None:
    err = IntegrityError("s3proxy-mm")
    assert err.field == "s3proxy-mm"
    assert "mm" not in str(err) and "mm" not in repr(err) and err.args == (IntegrityError.MESSAGE,)
    assert str(IntegrityError()) == str(err)


# --- §12 the metadata MAC ---
def test_sealed_metadata_verifies_and_is_version_2() -> None:
    meta = sealed()
    assert len(meta[KEY_METADATA_MAC]) == 43
    assert open_metadata(KEYS.meta, ARN, meta, HEADERS) == 2


def test_mac_input_layout_is_the_spec_s() -> None:
    got = metadata_mac_input("arn:aws:s3:::b/k", {"b": "2", "a": "1", KEY_METADATA_MAC: "ignored"}, {"expires": ""})
    want = (
        b"s3proxy.format@v2 metadata\x00" + b"\x00\x00\x00\x10arn:aws:s3:::b/k"
        + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x01a\x00\x00\x00\x011" + b"\x00\x00\x00\x01b\x00\x00\x00\x012"
        + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x07expires\x00\x00\x00\x00"
    )
    assert got == want
    mac = hmac.new(KEYS.meta, want, hashlib.sha256).digest()
    assert metadata_mac(KEYS.meta, "arn:aws:s3:::b/k", {"a": "1", "b": "2"}, {"expires": ""}).encode() == \
        base64.urlsafe_b64encode(mac).rstrip(b"=")


@pytest.mark.parametrize("header", BOUND_HEADERS)
@pytest.mark.parametrize("change", ["edited", "added", "removed", "emptied"])
def test_every_bound_header_is_bound(header: str, change: str) -> None:
    headers = {h: f"value of {h}" for h in BOUND_HEADERS}
    meta = sealed(headers=headers)
    tampered = dict(headers)
    if change == "edited":
        tampered[header] = "text/html"
    elif change == "removed":
        del tampered[header]
    elif change == "emptied":
        tampered[header] = ""
    else:  # added: sealed without it, read with it
        meta = sealed(headers={h: v for h, v in headers.items() if h != header})
    with pytest.raises(IntegrityError) as caught:
        open_metadata(KEYS.meta, ARN, meta, tampered)
    assert caught.value.field == KEY_METADATA_MAC


def test_absent_header_is_not_an_empty_header() -> None:
    assert metadata_mac_input(ARN, {}, {}) != metadata_mac_input(ARN, {}, {"content-language": ""})


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(colour="red"),  # user metadata edited
        lambda m: m.update(extra="added"),  # added
        lambda m: m.pop("colour"),  # removed
        lambda m: m.update({"Colour": m.pop("colour")}),  # key renamed
        lambda m: m.update({"s3proxy-user-x": "other"}),  # an escaped client key
        lambda m: m.update({KEY_ETAG: "f" * 32}),  # the client ETag
        lambda m: m.update({KEY_SIZE: "6"}),  # the plaintext size
        lambda m: m.update({KEY_CHECKSUMS: "bogus"}),  # the sealed checksums, added
        lambda m: m.update({KEY_TRAILER: "2"}),  # a trailer claimed
        lambda m: m.update({"s3proxy-key": "b3RoZXI="}),  # another wrap
        lambda m: m.update({"s3proxy-kid": "arn:aws:kms:us-east-1:000000000000:key/y"}),  # relabelled key
        lambda m: m.update({"s3proxy-mode": "AES256"}),  # relabelled mode
        lambda m: m.update({KEY_METADATA_MAC: m[KEY_METADATA_MAC][:-1] + ("A" if m[KEY_METADATA_MAC][-1] != "A" else "B")}),
        lambda m: m.pop(KEY_METADATA_MAC),
    ],
)
def test_every_metadata_edit_is_refused(edit) -> None:  # noqa: ANN001
    meta = sealed()
    edit(meta)
    with pytest.raises(IntegrityError):
        open_metadata(KEYS.meta, ARN, meta, HEADERS)


def test_metadata_cannot_move_to_another_name_or_key() -> None:
    meta = sealed()
    for arn in (object_arn("bucket", "dir/key.htm"), object_arn("other", "dir/key.html")):
        with pytest.raises(IntegrityError):
            open_metadata(KEYS.meta, arn, meta, HEADERS)
    with pytest.raises(IntegrityError):
        open_metadata(integrity_keys(bytes(32)).meta, ARN, meta, HEADERS)


def test_value_moved_between_header_and_metadata_changes_the_input() -> None:
    assert metadata_mac_input(ARN, {"content-type": "x"}, {}) != metadata_mac_input(ARN, {}, {"content-type": "x"})


def test_unknown_header_names_are_a_caller_error() -> None:
    with pytest.raises(ValueError):
        metadata_mac_input(ARN, {}, {"x-amz-tagging-count": "1"})


def test_reseal_replaces_the_mac() -> None:
    meta = sealed()
    meta["colour"] = "green"  # a metadata-only copy changes a field and re-seals
    again = seal_metadata(KEYS.meta, ARN, meta, HEADERS)
    assert open_metadata(KEYS.meta, ARN, again, HEADERS) == 2


def test_surrogate_escaped_bytes_are_bound_as_received() -> None:
    raw = "caf\udcc3"  # an undecodable byte the backend client kept with surrogateescape
    meta = sealed(base(note=raw))
    assert open_metadata(KEYS.meta, ARN, meta, HEADERS) == 2
    with pytest.raises(IntegrityError):
        open_metadata(KEYS.meta, ARN, {**meta, "note": "caf\udcc4"}, HEADERS)


# --- §7 / §11 shape and ETag source ---
@pytest.mark.parametrize(
    "extra, missing, where",
    [
        ({}, (), ETAG_CLEAR),
        ({"s3proxy-mode": "AES256", KEY_SEALED_ETAG: "S"}, (KEY_ETAG,), ETAG_SEALED),
        ({"s3proxy-mode": "AES256", KEY_TRAILER: "1"}, (KEY_ETAG,), ETAG_TRAILER),
        ({"s3proxy-mode": "AES256", KEY_TRAILER: "3"}, (KEY_ETAG,), ETAG_TRAILER),
        ({KEY_TRAILER: "2"}, (), ETAG_CLEAR),  # a late checksum beside a clear ETag
        ({KEY_MPU: "ab" * 16}, (KEY_ETAG, KEY_SIZE, KEY_MAC), ETAG_RECORD),
        ({KEY_MPU: "ab" * 16}, (KEY_SIZE, KEY_MAC), ETAG_CLEAR),  # a copy of a multipart object
        ({KEY_SEALED_ETAG: "S"}, (KEY_ETAG,), ETAG_SEALED),  # an SSE-S3 object re-wrapped to SSE-KMS keeps its MD5
        # a copy keeps the trailer
        ({KEY_SEALED_ETAG: "S", "s3proxy-mode": "AES256", KEY_TRAILER: "1"}, (KEY_ETAG,), ETAG_SEALED),
        ({KEY_TRAILER: "1"}, (), ETAG_CLEAR),  # an SSE-S3 trailer object copied into SSE-KMS: a new random ETag
    ],
)
def test_etag_sources(extra: dict[str, str], missing: tuple[str, ...], where: str) -> None:
    meta = {k: v for k, v in base(**extra).items() if k not in missing}
    assert etag_source(meta) == where
    assert open_metadata(KEYS.meta, ARN, sealed(meta), HEADERS) == 2


@pytest.mark.parametrize(
    "extra, missing, field",
    [
        ({"s3proxy-mode": "AES256"}, (), "etag"),  # SSE-S3 never keeps a clear ETag
        ({KEY_TRAILER: "1"}, (KEY_ETAG,), "etag"),  # an ETag only in the trailer of SSE-KMS: HEAD would need K
        ({KEY_SEALED_ETAG: "S"}, (), "etag"),  # both metadata sources
        ({}, (KEY_ETAG,), "etag"),  # none
        ({KEY_ETAG: "0123"}, (), KEY_ETAG),  # not 32 hex digits
        ({KEY_TRAILER: "4"}, (), KEY_TRAILER),
        ({KEY_PARTS: "1"}, (), KEY_PARTS),  # v2 keeps part lists in the record
        ({KEY_MPU: "ab" * 16}, (), KEY_SIZE),  # multipart with a size in metadata
        ({}, (KEY_SIZE,), KEY_SIZE),  # single-part without one
        ({KEY_MPU: "ab" * 16, KEY_TRAILER: "2"}, (KEY_SIZE, KEY_MAC), KEY_TRAILER),
        ({KEY_TRAILER: "2", KEY_CHECKSUMS: "c"}, (), KEY_CHECKSUMS),  # a checksum in two places
        ({"s3proxy-new": "1"}, (), "s3proxy-new"),  # a field this reader does not know
        ({"s3proxy-mode": "aws:fsx"}, (), "s3proxy-mode"),
        ({}, ("s3proxy-key",), "s3proxy-key"),
    ],
)
def test_authentic_but_malformed_shapes_are_refused(extra: dict[str, str], missing: tuple[str, ...], field: str) -> None:
    meta = sealed({k: v for k, v in base(**extra).items() if k not in missing})
    with pytest.raises(IntegrityError) as caught:
        open_metadata(KEYS.meta, ARN, meta, HEADERS)
    assert caught.value.field == field


def test_sealed_etag_round_trip_and_binding() -> None:
    value = seal_etag(KEYS.meta, ARN, MD5)
    assert len(value) == 64 and MD5 not in value
    assert open_etag(KEYS.meta, ARN, value) == MD5
    meta = {k: v for k, v in base(**{"s3proxy-mode": "AES256", KEY_SEALED_ETAG: value}).items() if k != KEY_ETAG}
    assert metadata_etag(KEYS.meta, ARN, meta) == MD5
    for arn, ik, text in ((object_arn("bucket", "x"), KEYS.meta, value), (ARN, KEYS.records, value),
                          (ARN, KEYS.meta, value[:-1] + ("A" if value[-1] != "A" else "B")), (ARN, KEYS.meta, value + "A"),
                          (ARN, KEYS.meta, value[:-2]), (ARN, KEYS.meta, "!" * 64)):
        with pytest.raises(IntegrityError) as caught:
            open_etag(ik, arn, text)
        assert caught.value.field == KEY_SEALED_ETAG
    with pytest.raises(ValueError):
        seal_etag(KEYS.meta, ARN, MD5.upper())


def test_etag_in_trailer_or_record_is_not_in_the_metadata() -> None:
    assert metadata_etag(KEYS.meta, ARN, {k: v for k, v in base(**{KEY_MPU: "ab" * 16}).items() if k != KEY_ETAG}) is None
    assert metadata_etag(KEYS.meta, ARN, base()) == "0123456789abcdef0123456789abcdef"


# --- §14 step 1 / §19.1 versions ---
def test_versions_and_the_v1_window() -> None:
    assert open_metadata(KEYS.meta, ARN, {"colour": "blue"}, {}) == 0  # not an s3proxy object
    v1 = {"s3proxy-v": "1", "s3proxy-cs": "65536", "colour": "anything"}
    assert open_metadata(KEYS.meta, ARN, v1, HEADERS) == 1
    with pytest.raises(IntegrityError) as caught:
        open_metadata(KEYS.meta, ARN, v1, HEADERS, accept_v1=False)
    assert caught.value.field == KEY_VERSION
    for key in (KEY_METADATA_MAC, KEY_TRAILER, KEY_SEALED_ETAG):  # version-2 fields on a version-1 object
        with pytest.raises(IntegrityError):
            open_metadata(KEYS.meta, ARN, {**v1, key: "1"}, HEADERS)
    for version in ("3", "02", ""):
        with pytest.raises(IntegrityError):
            open_metadata(KEYS.meta, ARN, {**sealed(), KEY_VERSION: version}, HEADERS)


def test_downgrade_of_a_v2_object_is_caught_once_v1_is_closed() -> None:
    meta = sealed()
    downgraded = {k: v for k, v in meta.items() if k != KEY_METADATA_MAC}
    downgraded[KEY_VERSION] = "1"
    assert open_metadata(KEYS.meta, ARN, downgraded, {"content-type": "text/html"}) == 1  # the window (§19.4)
    with pytest.raises(IntegrityError):
        open_metadata(KEYS.meta, ARN, downgraded, {"content-type": "text/html"}, accept_v1=False)
