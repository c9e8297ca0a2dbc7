"""Custom key stores of type AWS_CLOUDHSM backed by a PKCS#11 token (SoftHSM2): the API through boto3 against
`s3proxy serve`, SSE-KMS through S3 under a key of such a store, a disconnect and a token that goes away while
serving, a restart, the end of a key's deletion window, and a check that the key's material never leaves the token.

Each test initialises its own SoftHSM2 token (tests/kms/softhsm.py); the proxy is a real process, so the token's
configuration is its own.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
import uuid

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.hardening.harness import ProxyProcess, s3_client
from tests.kms.softhsm import PIN, SoftHsm, files_hold, memory_holds
from tests.kms.test_hsm_root import kms_client

TOKEN = "cluster-s3proxytest"  # AWS's CloudHsmClusterId form, read as the token's label


def trust_anchor() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "customerCA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
            .not_valid_before(datetime.datetime(2024, 1, 1)).not_valid_after(datetime.datetime(2044, 1, 1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _proxy(tmp_path, hsm: SoftHsm, name: str = "data", **env: str) -> ProxyProcess:
    return ProxyProcess(tmp_path / name, env={**hsm.env, "S3PROXY_PKCS11_MODULE": hsm.module, **env},
                        log=tmp_path / f"{name}.log", log_level="info")


def _code(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"].get("Message", "")


def _store(kms, store_id: str) -> dict:
    return kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]


def _connected_store(kms, name: str = "hsm", cluster: str = TOKEN) -> str:
    store_id = kms.create_custom_key_store(CustomKeyStoreName=name, CloudHsmClusterId=cluster,
                                           TrustAnchorCertificate=trust_anchor(), KeyStorePassword=PIN)["CustomKeyStoreId"]
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    return store_id


def test_store_api_through_boto3(tmp_path, softhsm):
    softhsm.init_token(TOKEN)
    softhsm.init_token("second-token")
    proxy = _proxy(tmp_path, softhsm).start()
    try:
        kms = kms_client(proxy.url)
        anchor = trust_anchor()
        store_id = kms.create_custom_key_store(CustomKeyStoreName="hsm", CloudHsmClusterId=TOKEN,
                                               TrustAnchorCertificate=anchor, KeyStorePassword=PIN)["CustomKeyStoreId"]
        entry = _store(kms, store_id)
        assert entry["ConnectionState"] == "DISCONNECTED" and "ConnectionErrorCode" not in entry
        assert (entry["CustomKeyStoreName"], entry["CloudHsmClusterId"], entry["TrustAnchorCertificate"],
                entry["CustomKeyStoreType"]) == ("hsm", TOKEN, anchor, "AWS_CLOUDHSM")
        assert "KeyStorePassword" not in json.dumps(entry, default=str) and PIN not in json.dumps(entry, default=str)
        named = kms.describe_custom_key_stores(CustomKeyStoreName="hsm")["CustomKeyStores"]
        assert [s["CustomKeyStoreId"] for s in named] == [store_id]

        def create(**kw):
            args = dict(CustomKeyStoreName="other", CloudHsmClusterId="pkcs11:token=second-token",
                        TrustAnchorCertificate=anchor, KeyStorePassword=PIN)
            return kms.create_custom_key_store(**{**args, **kw})

        assert _code(lambda: create(CustomKeyStoreName="hsm"))[0] == "CustomKeyStoreNameInUseException"
        assert _code(lambda: create(CloudHsmClusterId=f"pkcs11:token={TOKEN}"))[0] == "CloudHsmClusterInUseException"
        assert _code(lambda: create(CloudHsmClusterId="pkcs11:token=nosuchtoken"))[0] == "CloudHsmClusterNotFoundException"
        assert _code(lambda: create(TrustAnchorCertificate="not a certificate"))[0] == "IncorrectTrustAnchorException"
        # a caller never names the module loaded, a file read, a PIN or a key through CloudHsmClusterId
        for bad in ("pkcs11:token=second-token?module-path=/tmp/evil.so", "pkcs11:token=second-token?pin-source=/etc/shadow",
                    "pkcs11:token=second-token;object=root", "second-token-but-no-uri"):
            assert _code(lambda bad=bad: create(CloudHsmClusterId=bad))[0] == "ValidationException", bad
        code, message = _code(lambda: create(KeyStorePassword="a-pin-far-longer-than-32-characters"))
        assert code == "ValidationException" and "a-pin-far" not in message
        assert _code(lambda: create(CustomKeyStoreType="EXTERNAL_KEY_STORE"))[0] == "UnsupportedOperationException"
        assert _code(lambda: kms.describe_custom_key_stores(CustomKeyStoreId="cks-00000000000000000"))[0] == \
            "CustomKeyStoreNotFoundException"

        # keys: only in a connected store, only symmetric encryption keys, generated in the token
        assert _code(lambda: kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id))[0] == \
            "CustomKeyStoreInvalidStateException"
        assert _code(lambda: kms.create_key(Origin="AWS_CLOUDHSM"))[0] == "UnsupportedOperationException"
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        assert _store(kms, store_id)["ConnectionState"] == "CONNECTED"
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)  # connecting a connected store: fine, as AWS
        assert _code(lambda: kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id, KeySpec="RSA_2048"))[0] == \
            "UnsupportedOperationException"
        meta = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id, Description="in the token")["KeyMetadata"]
        assert (meta["Origin"], meta["CustomKeyStoreId"], meta["CloudHsmClusterId"], meta["KeyState"]) == \
            ("AWS_CLOUDHSM", store_id, TOKEN, "Enabled")
        key = meta["KeyId"]
        soft = kms.create_key()["KeyMetadata"]["KeyId"]

        # the cryptography, done in the token
        blob = kms.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext={"app": "a"})["CiphertextBlob"]
        assert blob[:2] == b"K1" and uuid.UUID(bytes=blob[2:18]) == uuid.UUID(key)  # the outer format of every key
        out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "a"})
        assert (out["Plaintext"], out["KeyId"]) == (b"secret", meta["Arn"])
        assert _code(lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "b"}))[0] == "InvalidCiphertextException"
        assert _code(lambda: kms.decrypt(CiphertextBlob=blob[:-1] + bytes([blob[-1] ^ 1]),
                                         EncryptionContext={"app": "a"}))[0] == "InvalidCiphertextException"
        dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
        assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
        wp = kms.generate_data_key_without_plaintext(KeyId=key, NumberOfBytes=64)["CiphertextBlob"]
        assert len(kms.decrypt(CiphertextBlob=wp)["Plaintext"]) == 64
        moved = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"app": "a"}, DestinationKeyId=soft)
        back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=key)
        assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == b"secret"
        assert len(kms.generate_random(NumberOfBytes=48, CustomKeyStoreId=store_id)["Plaintext"]) == 48
        for rotation in (lambda: kms.enable_key_rotation(KeyId=key), lambda: kms.rotate_key_on_demand(KeyId=key)):
            assert _code(rotation)[0] == "UnsupportedOperationException"
        assert _code(lambda: kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                                           WrappingKeySpec="RSA_2048"))[0] == "UnsupportedOperationException"

        # what needs a disconnected store, and what a disconnected store refuses
        assert _code(lambda: kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=PIN))[0] == \
            "CustomKeyStoreInvalidStateException"
        kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="renamed")  # the name: any time
        assert _store(kms, store_id)["CustomKeyStoreName"] == "renamed"
        assert _code(lambda: kms.delete_custom_key_store(CustomKeyStoreId=store_id))[0] == "CustomKeyStoreInvalidStateException"
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
        assert _code(lambda: kms.disconnect_custom_key_store(CustomKeyStoreId=store_id))[0] == \
            "CustomKeyStoreInvalidStateException"
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Unavailable"
        for use in (lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "a"}),
                    lambda: kms.encrypt(KeyId=key, Plaintext=b"x"), lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256")):
            assert _code(use)[0] == "KMSInvalidStateException"
        assert _code(lambda: kms.generate_random(NumberOfBytes=8, CustomKeyStoreId=store_id))[0] == \
            "CustomKeyStoreInvalidStateException"
        assert _code(lambda: kms.delete_custom_key_store(CustomKeyStoreId=store_id))[0] == "CustomKeyStoreHasCMKsException"
        # another token that lacks this store's keys is not "related"
        assert _code(lambda: kms.update_custom_key_store(CustomKeyStoreId=store_id,
                                                         CloudHsmClusterId="pkcs11:token=second-token"))[0] == \
            "CloudHsmClusterNotRelatedException"

        # a wrong PIN: the connection FAILS, says why, and needs a disconnect before the next try
        kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword="wrong-pin-0")
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        failed = _store(kms, store_id)
        assert (failed["ConnectionState"], failed["ConnectionErrorCode"]) == ("FAILED", "INVALID_CREDENTIALS")
        assert _code(lambda: kms.connect_custom_key_store(CustomKeyStoreId=store_id))[0] == \
            "CustomKeyStoreInvalidStateException"
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
        kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=PIN)
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "a"})["Plaintext"] == b"secret"

        # a store without keys, disconnected, can go
        empty = kms.create_custom_key_store(CustomKeyStoreName="empty", CloudHsmClusterId="pkcs11:token=second-token",
                                            TrustAnchorCertificate=anchor, KeyStorePassword=PIN)["CustomKeyStoreId"]
        kms.delete_custom_key_store(CustomKeyStoreId=empty)
        assert _code(lambda: kms.connect_custom_key_store(CustomKeyStoreId=empty))[0] == "CustomKeyStoreNotFoundException"
    finally:
        proxy.stop()
    # every store operation is audited; the PIN (and the wrong one) is in no file and no log line
    audit = [json.loads(line) for line in (tmp_path / "data" / "kms" / "audit.log").read_text().splitlines() if line.strip()]
    events = {r["eventName"] for r in audit}
    assert {"CreateCustomKeyStore", "DescribeCustomKeyStores", "ConnectCustomKeyStore", "DisconnectCustomKeyStore",
            "UpdateCustomKeyStore", "DeleteCustomKeyStore"} <= events
    created = next(r for r in audit if r["eventName"] == "CreateCustomKeyStore" and "errorCode" not in r)
    assert created["requestParameters"]["cloudHsmClusterId"] == TOKEN
    for secret in (PIN.encode(), b"wrong-pin-0"):
        assert files_hold(tmp_path / "data", secret) == [], secret
        assert secret not in (tmp_path / "data.log").read_bytes()


def test_sse_kms_through_s3_disconnect_token_gone_and_restart(tmp_path, softhsm):
    softhsm.init_token(TOKEN)
    proxy = _proxy(tmp_path, softhsm).start()
    try:
        kms, s3 = kms_client(proxy.url), s3_client(proxy.url)
        store_id = _connected_store(kms)
        key = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)["KeyMetadata"]["KeyId"]
        s3.create_bucket(Bucket="hsm")
        s3.put_object(Bucket="hsm", Key="a", Body=b"first object", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
        s3.put_object(Bucket="hsm", Key="bk", Body=b"bucket key", ServerSideEncryption="aws:kms", SSEKMSKeyId=key,
                      BucketKeyEnabled=True)
        head = s3.head_object(Bucket="hsm", Key="a")
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"].split("/")[-1]) == ("aws:kms", key)
        assert s3.get_object(Bucket="hsm", Key="a")["Body"].read() == b"first object"

        # disconnected while serving: reads and writes under the key are refused clearly; nothing is written
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
        for call in (lambda: s3.put_object(Bucket="hsm", Key="refused", Body=b"x", ServerSideEncryption="aws:kms",
                                           SSEKMSKeyId=key),
                     lambda: s3.put_object(Bucket="hsm", Key="refused-bk", Body=b"x", ServerSideEncryption="aws:kms",
                                           SSEKMSKeyId=key, BucketKeyEnabled=True),
                     lambda: s3.get_object(Bucket="hsm", Key="a"), lambda: s3.get_object(Bucket="hsm", Key="bk")):
            code, message = _code(call)
            assert code == "KMS.KMSInvalidStateException" and "custom key store is not connected" in message
        assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="hsm")["Contents"]) == ["a", "bk"]
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        assert s3.get_object(Bucket="hsm", Key="bk")["Body"].read() == b"bucket key"

        # the token goes away while the store is connected: KeyUnavailableException, nothing written; back: serving again
        softhsm.take_away()
        code, message = _code(lambda: s3.put_object(Bucket="hsm", Key="gone", Body=b"y", ServerSideEncryption="aws:kms",
                                                    SSEKMSKeyId=key))
        assert code == "KMS.KeyUnavailableException" and "cannot be reached" in message
        code, _ = _code(lambda: s3.get_object(Bucket="hsm", Key="a"))
        assert code == "KMS.KeyUnavailableException"
        assert _code(lambda: kms.encrypt(KeyId=key, Plaintext=b"z"))[0] == "KeyUnavailableException"
        before = kms.list_keys()["Keys"]
        assert _code(lambda: kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id))[0] == "KeyUnavailableException"
        assert kms.list_keys()["Keys"] == before  # the refused CreateKey left no record
        assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="hsm")["Contents"]) == ["a", "bk"]
        softhsm.bring_back()
        s3.put_object(Bucket="hsm", Key="after", Body=b"after", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
        assert s3.get_object(Bucket="hsm", Key="a")["Body"].read() == b"first object"
    finally:
        proxy.stop()
    again = _proxy(tmp_path, softhsm).start()  # a restart: the store is still connected, its keys serve
    try:
        kms, s3 = kms_client(again.url), s3_client(again.url)
        assert _store(kms, store_id)["ConnectionState"] == "CONNECTED"
        assert [s3.get_object(Bucket="hsm", Key=k)["Body"].read() for k in ("a", "bk", "after")] == \
            [b"first object", b"bucket key", b"after"]
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    finally:
        again.stop()
    third = _proxy(tmp_path, softhsm).start()  # ... and a disconnected one stays disconnected
    try:
        kms = kms_client(third.url)
        assert _store(kms, store_id)["ConnectionState"] == "DISCONNECTED"
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Unavailable"
    finally:
        third.stop()


ATTRIBUTES = """
import json, pkcs11, sys, uuid
from pkcs11 import Attribute as A, KeyType, ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
with token.open(user_pin=sys.argv[3]) as s:
    keys = list(s.get_objects({A.CLASS: ObjectClass.SECRET_KEY, A.LABEL: sys.argv[4]}))
    out = {"count": len(keys)}
    if keys:
        key = keys[0]
        out.update({n: bool(key[getattr(A, n)]) for n in ("TOKEN", "SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE",
                                                            "ALWAYS_SENSITIVE", "WRAP", "UNWRAP", "DERIVE")})
        out["id"] = bytes(key[A.ID]) == uuid.UUID(sys.argv[4]).bytes
        out["bits"] = key[A.VALUE_LEN] * 8
        try:
            key[A.VALUE]
            out["value"] = "readable"
        except pkcs11.AttributeSensitive:
            out["value"] = "sensitive"
print(json.dumps(out))
"""

# the key's value must be known to search for it: the test puts a key of known value in the token under the KMS
# key's label and id (as restoring a token backup would), sensitive and never extractable
REPLACE_WITH_KNOWN = """
import pkcs11, sys, uuid
from pkcs11 import Attribute as A, KeyType, ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
with token.open(user_pin=sys.argv[3], rw=True) as s:
    for key in s.get_objects({A.CLASS: ObjectClass.SECRET_KEY, A.LABEL: sys.argv[4]}):
        key.destroy()
    s.create_object({A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.AES, A.TOKEN: True, A.LABEL: sys.argv[4],
                     A.ID: uuid.UUID(sys.argv[4]).bytes, A.VALUE: bytes.fromhex(sys.argv[5]), A.SENSITIVE: True,
                     A.EXTRACTABLE: False, A.ENCRYPT: True, A.DECRYPT: True})
"""


def _in_token(hsm: SoftHsm, script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, hsm.module, TOKEN, PIN, *args], env={**os.environ, **hsm.env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _keystore_record(data_dir, key_id: str):
    """The key's record as the keystore holds it, opened with the root key beside the data dir."""
    from s3proxy.kms.keystore import open_keystore
    from s3proxy.kms.registry import Registry
    from s3proxy.kms.wrapping import Sealer, load_root_key, root_key_location

    store = open_keystore(None, data_dir)
    try:
        return Registry(store, Sealer(load_root_key(root_key_location(data_dir), create=False))).key(key_id)
    finally:
        store.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs /proc to read a process's memory")
def test_key_material_never_leaves_the_token(tmp_path, softhsm):
    softhsm.init_token(TOKEN)
    proxy = _proxy(tmp_path, softhsm).start()
    try:
        kms = kms_client(proxy.url)
        store_id = _connected_store(kms)
        key = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)["KeyMetadata"]["KeyId"]
        soft = kms.create_key()["KeyMetadata"]["KeyId"]
    finally:
        proxy.stop()
    # generated in the token, sensitive and never extractable: the token refuses to show its value
    attrs = json.loads(_in_token(softhsm, ATTRIBUTES, key))
    assert attrs == {"count": 1, "TOKEN": True, "SENSITIVE": True, "EXTRACTABLE": False, "NEVER_EXTRACTABLE": True,
                     "ALWAYS_SENSITIVE": True, "WRAP": False, "UNWRAP": False, "DERIVE": False, "id": True, "bits": 256,
                     "value": "sensitive"}
    # the keystore holds a reference (store id, key id as label), no material
    record = _keystore_record(tmp_path / "data", key)
    assert record.materials == () and record.custom_key_store_id == store_id and record.origin == "AWS_CLOUDHSM"
    software_material = _keystore_record(tmp_path / "data", soft).materials[0]

    value = os.urandom(32)
    _in_token(softhsm, REPLACE_WITH_KNOWN, key, value.hex())
    again = _proxy(tmp_path, softhsm).start()
    try:
        kms, s3 = kms_client(again.url), s3_client(again.url)
        s3.create_bucket(Bucket="bkt")
        for i in range(5):
            blob = kms.encrypt(KeyId=key, Plaintext=b"p%d" % i)["CiphertextBlob"]
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p%d" % i
            kms.generate_data_key(KeyId=key, KeySpec="AES_256")
            s3.put_object(Bucket="bkt", Key=str(i), Body=b"body", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
            assert s3.get_object(Bucket="bkt", Key=str(i))["Body"].read() == b"body"
            kms.encrypt(KeyId=soft, Plaintext=b"software key in use")
        assert again.proc is not None
        assert not memory_holds(again.proc.pid, value), "the token key's value is in the proxy's memory"
        # the search finds a key the proxy does hold: the software key's material
        assert memory_holds(again.proc.pid, software_material)
    finally:
        again.stop()
    assert files_hold(tmp_path, value) == []
    log = (tmp_path / "data.log").read_bytes()
    assert value not in log and base64.b64encode(value) not in log and value.hex().encode() not in log


DELETION = """
import json, os, sys
from s3proxy.kms.audit import MemoryAuditSink
from s3proxy.kms.caller import Caller
from s3proxy.kms.keystore.memory import MemoryKeystore
from s3proxy.kms.service import KeyService
now = [1_700_000_000.0]
svc = KeyService.create(MemoryKeystore(), MemoryAuditSink(), root_key=os.urandom(32), clock=lambda: now[0],
                        pkcs11_module=sys.argv[1])
alice = Caller("AKIAALICE", "alice", "000000000000")
store = svc.create_custom_key_store(alice, "s", sys.argv[2], sys.argv[4], sys.argv[3])
svc.connect_custom_key_store(alice, store)
key = svc.create_key(alice, origin="AWS_CLOUDHSM", custom_key_store_id=store).key_id
kept = svc.create_key(alice, origin="AWS_CLOUDHSM", custom_key_store_id=store).key_id
svc.schedule_key_deletion(alice, key, 7)
svc.schedule_key_deletion(alice, kept, 7)
state = svc.cancel_key_deletion(alice, kept) and svc.describe_key(alice, kept).key_state
now[0] += 7 * 86400 + 1
purged = svc.purge_due()
print(json.dumps({"key": key, "kept": kept, "purged": purged, "cancelled_state": state}))
"""


def test_deletion_destroys_the_token_object(tmp_path, softhsm):
    softhsm.init_token(TOKEN)
    done = subprocess.run([sys.executable, "-c", DELETION, softhsm.module, TOKEN, PIN, trust_anchor()],
                          env={**os.environ, **softhsm.env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["purged"] == 1 and out["cancelled_state"] == "Disabled"
    assert json.loads(_in_token(softhsm, ATTRIBUTES, out["key"]))["count"] == 0  # the material is gone from the token
    assert json.loads(_in_token(softhsm, ATTRIBUTES, out["kept"]))["count"] == 1


def test_workers_share_the_store_and_its_connection_state(tmp_path, softhsm):
    """`serve --workers 2` over one keystore: a store connected or disconnected through one worker is so on every
    worker (the keystore's change feed); each worker logs in to the token on its own."""
    import time

    from tests.workers.test_workers import Workers

    softhsm.init_token(TOKEN)
    proc = ProxyProcess(tmp_path, extra=["--workers", "2"], env={**softhsm.env, "S3PROXY_PKCS11_MODULE": softhsm.module},
                        log=tmp_path.with_name(tmp_path.name + ".log"), log_level="info").start()
    try:
        w = Workers(tmp_path, proc, [])
        store_id = w.call(lambda c: c.create_custom_key_store(
            CustomKeyStoreName="shared", CloudHsmClusterId=TOKEN, TrustAnchorCertificate=trust_anchor(),
            KeyStorePassword=PIN))[1]["CustomKeyStoreId"]
        assert not isinstance(w.call(lambda c: c.connect_custom_key_store(CustomKeyStoreId=store_id))[1], ClientError)
        key = w.call(lambda c: c.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id))[1]["KeyMetadata"]["KeyId"]

        def on_every_worker(op, check) -> None:
            seen: set[int] = set()
            deadline = time.monotonic() + 10
            while len(seen) < 2 and time.monotonic() < deadline:
                worker, out = w.call(op)
                if check(out):
                    seen.add(worker)
            assert len(seen) == 2, seen

        # the other worker may take up to the change feed's bound to see the store connected (as AWS: eventually)
        deadline, out = time.monotonic() + 10, None
        while (out is None or isinstance(out, ClientError)) and time.monotonic() < deadline:
            out = w.call(lambda c: c.encrypt(KeyId=key, Plaintext=b"both"))[1]
        assert not isinstance(out, ClientError), out
        blob = out["CiphertextBlob"]
        on_every_worker(lambda c: c.decrypt(CiphertextBlob=blob),
                        lambda out: not isinstance(out, ClientError) and out["Plaintext"] == b"both")
        assert not isinstance(w.call(lambda c: c.disconnect_custom_key_store(CustomKeyStoreId=store_id))[1], ClientError)
        on_every_worker(lambda c: c.decrypt(CiphertextBlob=blob),
                        lambda out: isinstance(out, ClientError) and out.response["Error"]["Code"] == "KMSInvalidStateException")
    finally:
        proc.stop()


def test_store_actions_are_decided_by_identity_policies_and_stay_in_their_account():
    """IAM-only, as in AWS: the caller's identity policy decides kms:*CustomKeyStore*; a store is seen only by its
    own account. In process, without a token: neither check reaches one."""
    from s3proxy.kms.audit import MemoryAuditSink
    from s3proxy.kms.caller import Caller
    from s3proxy.kms.keystore.memory import MemoryKeystore
    from s3proxy.kms.registry import StoreRecord
    from s3proxy.kms.service import KeyService
    from s3proxy.policy import IDENTITY_POLICY, parse

    svc = KeyService.create(MemoryKeystore(), MemoryAuditSink(), root_key=os.urandom(32))
    only_describe = parse(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:DescribeCustomKeyStores", "Resource": "*"}]}), IDENTITY_POLICY)
    carol = Caller("AKIACAROL", "carol", "000000000000", identity=only_describe)
    svc.records.put_store(StoreRecord("cks-0123456789abcdef0", "000000000000", "s", TOKEN, trust_anchor(), PIN, 1.0),
                          create=True)
    assert [s.store_id for s in svc.describe_custom_key_stores(carol)] == ["cks-0123456789abcdef0"]
    denied = [lambda: svc.create_custom_key_store(carol, "n", TOKEN, trust_anchor(), PIN),
              lambda: svc.connect_custom_key_store(carol, "cks-0123456789abcdef0"),
              lambda: svc.disconnect_custom_key_store(carol, "cks-0123456789abcdef0"),
              lambda: svc.update_custom_key_store(carol, "cks-0123456789abcdef0", "renamed"),
              lambda: svc.delete_custom_key_store(carol, "cks-0123456789abcdef0")]
    for call in denied:
        with pytest.raises(Exception) as e:
            call()
        assert type(e.value).__name__ == "AccessDeniedException"
    other = Caller("AKIAOTHER", "dave", "111111111111")
    assert svc.describe_custom_key_stores(other) == []
    with pytest.raises(Exception) as e:
        svc.describe_custom_key_stores(other, "cks-0123456789abcdef0")
    assert type(e.value).__name__ == "CustomKeyStoreNotFoundException"
    with pytest.raises(Exception) as e:
        svc.create_key(other, origin="AWS_CLOUDHSM", custom_key_store_id="cks-0123456789abcdef0")
    assert type(e.value).__name__ == "CustomKeyStoreNotFoundException"
    # the audit records name the store operations; the PIN is never among their parameters
    assert PIN not in json.dumps(svc.audit.records)
    assert {r["eventName"] for r in svc.audit.records} >= {"CreateCustomKeyStore", "ConnectCustomKeyStore",
                                                            "DeleteCustomKeyStore", "DescribeCustomKeyStores"}
