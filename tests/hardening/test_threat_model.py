"""The claims of docs/THREAT_MODEL.md, one test each: what each attacker can and cannot do.

Tests named `..._can_...` pin down a documented limitation: they pass while the limitation holds,
so a change that removes it (or makes it worse) shows up here and in the document.
"""

from __future__ import annotations

import base64
import datetime as dt
import gc
import hashlib
import os
import shutil
import stat
import uuid
import warnings
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ResponseStreamingError

from s3proxy.app import StartupError, load_credentials
from s3proxy.kms.service import KeyService
from s3proxy.settings import load
from tests.e2e.conftest import OTHER_ACCESS_KEY, OTHER_SECRET_KEY, REGION, start_proxy

from .harness import error_code, raw_request, sigv4_headers

MARKER = b"PLAINTEXT-MARKER-4b1d"
BODY = MARKER * 8000  # ~170 KB: several chunks; any plaintext window would contain the marker
SSE_C_KEY = hashlib.sha256(b"customer key").digest()


def _sse(mode: str) -> dict:
    if mode == "SSE-C":
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}
    return {"ServerSideEncryption": mode}


MODES = ["AES256", "aws:kms", "SSE-C"]


@pytest.fixture(scope="module")
def over_moto(moto_server, tmp_path_factory):
    """A proxy on the moto backend; the test also holds the backend's own credentials."""
    thread, ep = start_proxy(tmp_path_factory.mktemp("threat"), "s3", moto_server)
    yield ep
    thread.stop()


@pytest.fixture
def tbucket(over_moto):
    name = f"tm-{uuid.uuid4().hex[:16]}"
    over_moto.client().create_bucket(Bucket=name)
    return name


def _failed_read(s3, **kwargs) -> bool:
    """True when the proxy refused to hand over the object (an S3 error or a broken transfer)."""
    try:
        s3.get_object(**kwargs)["Body"].read()
    except (ClientError, ResponseStreamingError):
        return True
    return False


# --- attacker 1: holds the backend's credentials ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_backend_holder_sees_only_ciphertext_and_no_key_material(over_moto, tbucket, mode):
    s3, backend = over_moto.client(), over_moto.backend_client()
    s3.put_object(Bucket=tbucket, Key="k", Body=BODY, Metadata={"owner": "alice"}, **_sse(mode))
    raw = backend.get_object(Bucket=tbucket, Key="k")
    stored = raw["Body"].read()
    assert MARKER not in stored and len(stored) > len(BODY)  # ciphertext plus per-chunk tags
    metadata = " ".join(f"{k}={v}" for k, v in raw["Metadata"].items())
    for secret in (base64.b64encode(SSE_C_KEY).decode(), SSE_C_KEY.hex()):
        assert secret not in metadata  # the SSE-C key is never stored, in any encoding
    internal = [b for b in backend.list_buckets()["Buckets"] if b["Name"] == "s3proxy-internal"]
    for b in internal:
        for item in backend.list_objects_v2(Bucket=b["Name"]).get("Contents", []):
            record = backend.get_object(Bucket=b["Name"], Key=item["Key"])["Body"].read()
            assert base64.b64encode(SSE_C_KEY) not in record and MARKER not in record


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_backend_holder_cannot_alter_an_object_undetected(over_moto, tbucket, damage):
    s3, backend = over_moto.client(), over_moto.backend_client()
    s3.put_object(Bucket=tbucket, Key="k", Body=BODY)
    raw = backend.get_object(Bucket=tbucket, Key="k")
    stored = bytearray(raw["Body"].read())
    if damage == "flip":
        stored[len(stored) // 2] ^= 1
    elif damage == "truncate":
        del stored[-100:]
    else:
        stored += b"extra"
    backend.put_object(Bucket=tbucket, Key="k", Body=bytes(stored), Metadata=raw["Metadata"])
    # docs/FORMAT.md, authenticate-then-release: the client gets the original plaintext or nothing.
    # (Appended bytes lie past every chunk the envelope names: the proxy sends the whole authentic
    # object, then finds the extra bytes and aborts the connection, after Content-Length was met.)
    try:
        got = s3.get_object(Bucket=tbucket, Key="k")["Body"].read()
    except (ClientError, ResponseStreamingError):
        return
    assert damage == "append" and got == BODY


def test_backend_holder_cannot_move_an_object_to_another_key(over_moto, tbucket):
    """The wrapped data key is bound to bucket/key (encryption context): a spliced object fails."""
    s3, backend = over_moto.client(), over_moto.backend_client()
    s3.put_object(Bucket=tbucket, Key="public", Body=b"public")
    s3.put_object(Bucket=tbucket, Key="private", Body=b"private")
    raw = backend.get_object(Bucket=tbucket, Key="private")
    backend.put_object(Bucket=tbucket, Key="public", Body=raw["Body"].read(), Metadata=raw["Metadata"])
    assert _failed_read(s3, Bucket=tbucket, Key="public")


def test_backend_holder_can_roll_an_object_back_to_an_older_version(over_moto, tbucket):
    """Limitation: nothing binds an object to its newest version; an old ciphertext put back under
    the same key still decrypts (S3 itself offers versioning, not rollback protection)."""
    s3, backend = over_moto.client(), over_moto.backend_client()
    s3.put_object(Bucket=tbucket, Key="k", Body=b"version 1")
    old = backend.get_object(Bucket=tbucket, Key="k")
    old_body, old_meta = old["Body"].read(), old["Metadata"]
    s3.put_object(Bucket=tbucket, Key="k", Body=b"version 2")
    backend.put_object(Bucket=tbucket, Key="k", Body=old_body, Metadata=old_meta)
    assert s3.get_object(Bucket=tbucket, Key="k")["Body"].read() == b"version 1"


def test_backend_holder_can_see_keys_sizes_and_user_metadata(over_moto, tbucket):
    """Limitation: object keys, approximate sizes and user metadata are stored in clear."""
    s3, backend = over_moto.client(), over_moto.backend_client()
    s3.put_object(Bucket=tbucket, Key="salaries/2025.csv", Body=b"x" * 1000, Metadata={"department": "finance"})
    listed = backend.list_objects_v2(Bucket=tbucket)["Contents"]
    assert [o["Key"] for o in listed] == ["salaries/2025.csv"]
    assert 1000 < listed[0]["Size"] < 1000 + 64  # plaintext size plus one tag (and a header)
    assert backend.head_object(Bucket=tbucket, Key="salaries/2025.csv")["Metadata"]["department"] == "finance"


# --- attacker 2: another user of the same proxy --------------------------------------------------------


def _bob(ep, service: str = "s3"):
    return boto3.client(service, endpoint_url=ep.url, aws_access_key_id=OTHER_ACCESS_KEY, aws_secret_access_key=OTHER_SECRET_KEY,
                        region_name=REGION, config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


def test_other_user_cannot_use_someone_elses_kms_key(over_moto, tbucket):
    alice_kms = over_moto.client("kms")
    key_id = alice_kms.create_key(Description="alice's")["KeyMetadata"]["KeyId"]
    over_moto.client().put_object(Bucket=tbucket, Key="k", Body=b"alice only", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    with pytest.raises(ClientError) as s3_err:
        _bob(over_moto).get_object(Bucket=tbucket, Key="k")
    assert s3_err.value.response["Error"]["Code"] == "AccessDenied"
    blob = alice_kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    with pytest.raises(ClientError) as kms_err:
        _bob(over_moto, "kms").decrypt(CiphertextBlob=blob)
    assert kms_err.value.response["Error"]["Code"] == "AccessDeniedException"


def test_other_user_cannot_read_an_sse_c_object_without_its_key(over_moto, tbucket):
    over_moto.client().put_object(Bucket=tbucket, Key="k", Body=b"customer data", **_sse("SSE-C"))
    bob = _bob(over_moto)
    with pytest.raises(ClientError) as no_key:
        bob.get_object(Bucket=tbucket, Key="k")
    assert no_key.value.response["Error"]["Code"] == "InvalidRequest"  # S3: SSE-C object read without the key
    with pytest.raises(ClientError) as wrong_key:
        bob.get_object(Bucket=tbucket, Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    assert wrong_key.value.response["Error"]["Code"] == "AccessDenied"


def test_other_user_can_read_sse_s3_objects_in_any_bucket(over_moto, tbucket):
    """Limitation: users of one proxy are users of one account with no bucket policies or ACLs;
    SSE-S3 protects data at rest, not from the proxy's other users."""
    over_moto.client().put_object(Bucket=tbucket, Key="k", Body=b"shared")
    assert _bob(over_moto).get_object(Bucket=tbucket, Key="k")["Body"].read() == b"shared"


def test_no_client_reaches_the_internal_records_bucket(over_moto):
    s3 = over_moto.client()
    for call in (lambda: s3.list_objects_v2(Bucket="s3proxy-internal"),
                 lambda: s3.get_object(Bucket="s3proxy-internal", Key="bucket-encryption/x"),
                 lambda: s3.put_object(Bucket="s3proxy-internal", Key="parts/forged", Body=b"{}")):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "AccessDenied"


# --- attacker 3: on the network ---------------------------------------------------------------------


def test_network_observer_cannot_replay_a_request_after_15_minutes_or_alter_one(over_moto, tbucket):
    over_moto.client().put_object(Bucket=tbucket, Key="k", Body=b"data")
    url, path = over_moto.url, f"/{tbucket}/k"
    stale = sigv4_headers("GET", url + path, now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20))
    status, _, body = raw_request(url, "GET", path, headers=stale)
    assert (status, error_code(body)) == (403, "RequestTimeTooSkewed")  # S3: 15 minutes of clock skew
    fresh = sigv4_headers("DELETE", url + path)
    status, _, body = raw_request(url, "DELETE", f"/{tbucket}/other", headers=fresh)  # same signature, other key
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")


def test_sse_c_keys_are_refused_over_plain_http_from_other_hosts(tmp_path):
    """ssec_over_http=never is what a non-loopback client gets with the default `loopback`."""
    thread, ep = start_proxy(tmp_path, "fs", None, ssec_over_http="never")
    try:
        s3 = ep.client()
        s3.create_bucket(Bucket="ssec")
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket="ssec", Key="k", Body=b"x", **_sse("SSE-C"))
        assert err.value.response["Error"]["Code"] == "InvalidRequest"  # S3 refuses SSE-C over HTTP
    finally:
        thread.stop()


# --- attacker 4: has a copy of the data dir ----------------------------------------------------------


def _files(root: Path):
    return [p for p in root.rglob("*") if p.is_file()]


def test_data_dir_copy_without_the_root_key_holds_no_plaintext_and_decrypts_nothing(tmp_path):
    data, elsewhere = tmp_path / "data", tmp_path / "secrets"
    data.mkdir()
    elsewhere.mkdir(mode=0o700)
    thread, ep = start_proxy(data, "fs", None, root_key_file=str(elsewhere / "root.key"))
    try:
        s3 = ep.client()
        s3.create_bucket(Bucket="dd-bucket")
        for mode in MODES:
            s3.put_object(Bucket="dd-bucket", Key=mode, Body=BODY, **_sse(mode))
        ep.client("kms").create_key(Description="k")
    finally:
        thread.stop()
    for path in _files(data):
        content = path.read_bytes()
        assert MARKER not in content, path
        assert SSE_C_KEY not in content and base64.b64encode(SSE_C_KEY) not in content, path

    stolen = tmp_path / "stolen"
    shutil.copytree(data, stolen)
    (stolen / "users.toml").unlink()  # the thief brings their own client credentials and root key
    refused = False
    with warnings.catch_warnings():  # a failed start leaks two handles: see the regression test below
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            thread, ep = start_proxy(stolen, "fs", None, root_key_file=str(tmp_path / "thief.key"))
        except StartupError:  # refusing to start on a keystore the root key does not open: expected
            refused = True
        gc.collect()
    if refused:
        return
    try:
        for mode in ("AES256", "aws:kms"):
            assert _failed_read(ep.client(), Bucket="dd-bucket", Key=mode)
    finally:
        thread.stop()


def test_data_dir_copy_in_the_default_layout_carries_no_root_key_and_opens_nothing(tmp_path):
    """By default the root key sits beside the data dir (DATA_DIR.root.key), never inside it: a copy
    of the data dir (a backup, a volume snapshot, a stolen disk image of it) brings no key along."""
    (tmp_path / "data").mkdir()
    thread, ep = start_proxy(tmp_path / "data", "fs", None)
    try:
        ep.client().create_bucket(Bucket="dd-bucket")
        ep.client().put_object(Bucket="dd-bucket", Key="k", Body=b"secret", ServerSideEncryption="aws:kms")
    finally:
        thread.stop()
    assert (tmp_path / "data.root.key").exists()
    assert not [p for p in _files(tmp_path / "data") if p.name.endswith("root.key")]
    shutil.copytree(tmp_path / "data", tmp_path / "stolen")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(StartupError, match="root key does not match"):  # its own new root key opens nothing
            start_proxy(tmp_path / "stolen", "fs", None)
        gc.collect()


def test_data_dir_copy_with_the_root_key_inside_decrypts_everything(tmp_path):
    """Limitation: a root key kept inside the data dir (where versions before 0.2 made it, and still
    used there; or root_key_file pointed inside) goes wherever the data dir goes."""
    (tmp_path / "data").mkdir()
    thread, ep = start_proxy(tmp_path / "data", "fs", None, root_key_file=str(tmp_path / "data" / "root.key"))
    try:
        ep.client().create_bucket(Bucket="dd-bucket")
        ep.client().put_object(Bucket="dd-bucket", Key="k", Body=b"secret", ServerSideEncryption="aws:kms")
    finally:
        thread.stop()
    shutil.copytree(tmp_path / "data", tmp_path / "stolen")
    thread, ep = start_proxy(tmp_path / "stolen", "fs", None)  # the old default place is still honoured
    try:
        assert ep.client().get_object(Bucket="dd-bucket", Key="k")["Body"].read() == b"secret"
    finally:
        thread.stop()


def test_generated_client_credentials_and_root_key_are_owner_only(tmp_path):
    settings = load({"data_dir": str(tmp_path)}, env={})
    boot = load_credentials(settings)
    assert boot.generated is not None
    assert stat.S_IMODE((tmp_path / "credentials.toml").stat().st_mode) == 0o600
    (tmp_path / "d2").mkdir()
    thread, _ = start_proxy(tmp_path / "d2", "fs", None)
    thread.stop()
    assert stat.S_IMODE((tmp_path / "d2.root.key").stat().st_mode) == 0o600


def test_regression_refusing_a_wrong_root_key_leaks_the_audit_log_and_keystore_handles(tmp_path):
    """KeyService.open opens the SQLite keystore and the audit log, then KeyService.create raises
    RootKeyError for a root key that does not open the keystore, and nothing closes the two: each
    failed start (the thief's, or an operator's typo in root_key_file) leaks a file and a connection."""
    KeyService.open(tmp_path, tmp_path / "right.key").close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Exception, match="root key"):
            KeyService.open(tmp_path, tmp_path / "wrong.key")
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, leaked
