"""The claims of docs/THREAT_MODEL.md, one test each: what each attacker can and cannot do.

Tests named `..._can_...` pin down a documented limitation: they pass while the limitation holds,
so a change that removes it (or makes it worse) shows up here and in the document.
"""

from __future__ import annotations

import base64
import datetime as dt
import gc
import hashlib
import json
import os
import shutil
import stat
import threading
import time
import uuid
import warnings
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, ResponseStreamingError
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from s3proxy.app import StartupError, load_credentials
from s3proxy.format.auditchain import AuditOutcome
from s3proxy.kms.audit import FileAuditSink, MemoryAuditSink, verify_audit_log
from s3proxy.kms.keystore import sqlite_path
from s3proxy.kms.service import KeyService
from s3proxy.kms.wrapping import default_root_key
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


def test_backend_holder_can_change_what_the_proxy_does_not_bind_and_delete(over_moto, tbucket):
    """Limitation (docs/FORMAT.md §13): tags are not bound, so tags set in the backend are what the
    proxy answers; and a deleted object is simply gone."""
    s3, backend = over_moto.client(), over_moto.backend_client()
    s3.put_object(Bucket=tbucket, Key="k", Body=b"data", Tagging="class=secret")
    backend.put_object_tagging(Bucket=tbucket, Key="k", Tagging={"TagSet": [{"Key": "class", "Value": "public"}]})
    assert s3.get_object_tagging(Bucket=tbucket, Key="k")["TagSet"] == [{"Key": "class", "Value": "public"}]
    assert s3.get_object(Bucket=tbucket, Key="k")["Body"].read() == b"data"  # the body and bound fields still verify
    backend.delete_object(Bucket=tbucket, Key="k")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=tbucket, Key="k")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"


def test_backend_holder_can_plant_an_object_that_a_copy_then_makes_authentic(over_moto, tbucket):
    """Limitation: an object without s3proxy's fields is one that predates the proxy. Its body is never
    served (403 InvalidObjectState, which advises encrypting it in place), but CopyObject encrypts such
    a source on the way, as existing data is adopted: content the backend holder wrote straight to the
    backend, or an object of the proxy stripped of its fields, comes out of the copy as an authentic
    object."""
    s3, backend = over_moto.client(), over_moto.backend_client()
    s3.put_object(Bucket=tbucket, Key="report", Body=b"the real report")
    backend.put_object(Bucket=tbucket, Key="report", Body=b"the attacker's report")  # no s3proxy-* fields
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=tbucket, Key="report")
    assert err.value.response["Error"]["Code"] == "InvalidObjectState"
    s3.copy_object(Bucket=tbucket, Key="report", CopySource={"Bucket": tbucket, "Key": "report"},
                   ServerSideEncryption="AES256")  # "encrypt it in place", as the error says
    assert s3.get_object(Bucket=tbucket, Key="report")["Body"].read() == b"the attacker's report"


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


def test_a_user_of_the_same_account_without_an_identity_policy_reads_its_accounts_objects(over_moto, tbucket):
    """Limitation (a design choice, docs/SECURITY.md "Accounts and policies"): a user with no identity
    policy has full access within its own account, so alice's SSE-S3 objects are bob's to read; only
    an identity policy restricts him. Other accounts get nothing without a bucket policy."""
    over_moto.client().put_object(Bucket=tbucket, Key="k", Body=b"shared within the account")
    assert _bob(over_moto).get_object(Bucket=tbucket, Key="k")["Body"].read() == b"shared within the account"


def test_a_bucket_policy_grant_revoked_on_one_proxy_lasts_up_to_5_s_on_another(tmp_path, moto_server):
    """Limitation (docs/SCALING.md): bucket records (owner, policy, Block Public Access) are cached
    for 5 s per process. A grant withdrawn through one proxy stops there at once, and on another
    proxy in front of the same backend only when its cached copy expires: within 5 s."""
    from tests.e2e.test_access_matrix import B, client, start

    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = start(tmp_path / "one", "s3", moto_server)
    bucket = f"tm-{uuid.uuid4().hex[:16]}"
    client(one.url, "alice").create_bucket(Bucket=bucket)
    client(one.url, "alice").put_object(Bucket=bucket, Key="k", Body=b"granted")  # SSE-S3: the service key exists
    shared = load({"data_dir": str(tmp_path / "one" / "data")}, env={})
    two = start(tmp_path / "two", "s3", moto_server, keystore_url=f"sqlite:///{sqlite_path(None, shared.data_dir)}",
                root_key_file=str(shared.root_key_path))
    try:
        alice, bert_one, bert_two = client(one.url, "alice"), client(one.url, "bert"), client(two.url, "bert")
        alice.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"}, "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/k"}]}))
        cached = time.monotonic()  # proxy two reads the policy record no earlier than this
        assert bert_two.get_object(Bucket=bucket, Key="k")["Body"].read() == b"granted"
        alice.delete_bucket_policy(Bucket=bucket)
        revoked = time.monotonic()
        assert _failed_read(bert_one, Bucket=bucket, Key="k")  # at once where it was revoked
        still = not _failed_read(bert_two, Bucket=bucket, Key="k")
        if time.monotonic() - cached < 4.0:  # certainly inside proxy two's 5 s record lifetime
            assert still
        while not _failed_read(bert_two, Bucket=bucket, Key="k"):
            assert time.monotonic() - revoked < 5.0 + 2.0, "the revoked grant outlived the 5 s record lifetime"
            time.sleep(0.2)
    finally:
        two.stop()
        one.stop()


def test_proxies_racing_on_one_keystore_agree_on_the_sse_s3_service_key(tmp_path):
    """Scale-out: SSE-S3 data keys are wrapped by the one service key every proxy must agree on. Two
    key services over one keystore (two processes: each its own cache and watcher) ask for it at
    once, as the readiness probes of replicas starting together do."""
    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    services: list[KeyService] = []
    for node in ("a", "b"):
        (tmp_path / node).mkdir()
        if services:
            shutil.copy2(default_root_key(tmp_path / "a"), default_root_key(tmp_path / node))
        services.append(KeyService.open(tmp_path / node, keystore_url=url, audit=MemoryAuditSink()))
    try:
        barrier, got = threading.Barrier(2), {}

        def take(service: KeyService) -> None:
            barrier.wait()
            got[id(service)] = service.service_key()

        threads = [threading.Thread(target=take, args=(s,)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1.0)  # the keystore's consistency bound
        preferred = {s.service_key() for s in services}
        service_keys = {r.arn for r in services[1].records.keys() if r.key_manager == "SERVICE"}
        assert (len(set(got.values())), len(service_keys), preferred) == (1, 1, set(got.values()))
    finally:
        for s in services:
            s.close()


def test_no_client_reaches_the_internal_records_bucket(over_moto):
    s3 = over_moto.client()
    for call in (lambda: s3.list_objects_v2(Bucket="s3proxy-internal"),
                 lambda: s3.get_object(Bucket="s3proxy-internal", Key="bucket-encryption/x"),
                 lambda: s3.put_object(Bucket="s3proxy-internal", Key="parts/forged", Body=b"{}")):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_with_an_external_kms_the_kms_authorizes_the_proxy_not_the_requester(tmp_path):
    """Limitation (kms_url, docs/KMS.md): the proxy signs every call to the external KMS with its own
    credential, so the external key's policy sees the proxy, never the requester. Here the key's policy
    admits alice only (bob is refused at that KMS directly), the front proxy holds alice's credential,
    and bob reads alice's SSE-KMS object through it. With the internal KMS he is refused
    (test_other_user_cannot_use_someone_elses_kms_key)."""
    (tmp_path / "kms").mkdir()
    (tmp_path / "front").mkdir()
    kms_thread, kms_side = start_proxy(tmp_path / "kms", "fs", None)
    try:
        key = kms_side.client("kms").create_key(Description="alice's, elsewhere")["KeyMetadata"]["Arn"]
        blob = kms_side.client("kms").encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
        with pytest.raises(ClientError) as err:
            _bob(kms_side, "kms").decrypt(CiphertextBlob=blob)
        assert err.value.response["Error"]["Code"] == "AccessDeniedException"
        thread, front = start_proxy(tmp_path / "front", "fs", None, kms_url=kms_side.url, kms_access_key=kms_side.access_key,
                                    kms_secret_key=kms_side.secret_key)
        try:
            front.client().create_bucket(Bucket="ext")
            front.client().put_object(Bucket="ext", Key="k", Body=b"alice's", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
            assert _bob(front).get_object(Bucket="ext", Key="k")["Body"].read() == b"alice's"
        finally:
            thread.stop()
    finally:
        kms_thread.stop()


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


# --- attacker 5: anyone who can reach the port -------------------------------------------------------


def test_the_anonymous_principal_opens_no_sse_kms_object_even_in_a_public_bucket(over_moto, tbucket):
    """A public bucket policy (Block Public Access off, `Principal: *` may GetObject) opens its SSE-S3
    objects to anonymous requests; SSE-KMS objects stay closed, under the aws/s3 key or a customer
    key: the anonymous principal cannot use a KMS key (as on AWS, where KMS needs a signed caller)."""
    s3 = over_moto.client()
    s3.delete_public_access_block(Bucket=tbucket)
    s3.put_bucket_policy(Bucket=tbucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{tbucket}/*"}]}))
    key = over_moto.client("kms").create_key()["KeyMetadata"]["Arn"]
    s3.put_object(Bucket=tbucket, Key="sse-s3", Body=b"public", ServerSideEncryption="AES256")
    s3.put_object(Bucket=tbucket, Key="aws-s3", Body=b"closed", ServerSideEncryption="aws:kms")
    s3.put_object(Bucket=tbucket, Key="customer", Body=b"closed", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
    anonymous = boto3.client("s3", endpoint_url=over_moto.url, region_name=REGION, config=Config(
        signature_version=UNSIGNED, s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
    assert anonymous.get_object(Bucket=tbucket, Key="sse-s3")["Body"].read() == b"public"
    for name in ("aws-s3", "customer"):
        with pytest.raises(ClientError) as err:
            anonymous.get_object(Bucket=tbucket, Key=name)
        assert err.value.response["Error"]["Code"] == "AccessDenied", name


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


def test_data_dir_holder_can_cut_the_audit_logs_end_together_with_its_head(tmp_path):
    """Limitation (docs/FORMAT.md §16): the head file points at an authentic line but is no secret, so
    lines cut off the end, with the head rewritten to the new last line, leave a log that verifies.
    Cutting the end alone is caught (tests/kms/test_audit.py)."""
    ik_audit = os.urandom(32)
    log = tmp_path / "audit.log"
    sink = FileAuditSink(log, ik_audit=ik_audit)
    for i in range(6):
        sink.emit({"eventName": "Decrypt", "i": i})
    sink.close()
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:4]))
    assert verify_audit_log(log, ik_audit).outcome == AuditOutcome.INCOMPLETE
    last = json.loads(lines[3])
    (tmp_path / "audit.log.head").write_text(json.dumps({"seq": last["seq"], "mac": last["mac"]}))
    assert verify_audit_log(log, ik_audit).outcome == AuditOutcome.INTACT


def test_generated_client_credentials_and_root_key_are_owner_only(tmp_path):
    settings = load({"data_dir": str(tmp_path)}, env={})
    boot = load_credentials(settings)
    assert boot.generated is not None
    assert stat.S_IMODE((tmp_path / "credentials.toml").stat().st_mode) == 0o600
    (tmp_path / "d2").mkdir()
    thread, _ = start_proxy(tmp_path / "d2", "fs", None)
    thread.stop()
    assert stat.S_IMODE((tmp_path / "d2.root.key").stat().st_mode) == 0o600


def test_a_copy_of_the_self_signed_tls_files_can_issue_no_certificate(tmp_path):
    """`tls = self-signed`: the one private key in DATA_DIR/tls is the server's. The local CA's key
    signed that certificate and was never written, and the CA is name-constrained (critical) to the
    certificate's own names, so trusting ca.pem trusts nothing else."""
    (tmp_path / "data").mkdir()
    thread, _ = start_proxy(tmp_path / "data", "fs", None, tls="self-signed")
    thread.stop()
    files = {p.name: p.read_bytes() for p in _files(tmp_path / "data" / "tls")}
    assert sorted(files) == ["ca.pem", "cert.pem", "key.pem"]
    ca, cert = x509.load_pem_x509_certificate(files["ca.pem"]), x509.load_pem_x509_certificate(files["cert.pem"])
    cert.verify_directly_issued_by(ca)
    keys = [p for p in _files(tmp_path) if b"PRIVATE KEY" in p.read_bytes()]
    assert [p.name for p in keys] == ["key.pem"]
    public = serialization.load_pem_private_key(files["key.pem"], None).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public != ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = {str(n.value) for n in constraints.value.permitted_subtrees}
    served = {str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
    assert {"localhost", "127.0.0.1", "::1"} <= served and {n.split("/")[0] for n in permitted} == served


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
