"""The KMS root key inside a PKCS#11 token (SoftHSM2): `s3proxy serve` with root_key = a pkcs11: URI.

The proxy runs as a real process (`python -m s3proxy serve`), so each test has its own SoftHSM
configuration. Shown: the key is generated in the token, sensitive and never extractable; no root key
file is made; sealing and unsealing happen in the token (a restart opens the keystore through it); a
token that goes away while serving fails what needs it (keystore writes) with a clear error and no
loss, and serving resumes when it is back, without a restart; the key's value (known to the test, which
put it there) is in no file of the data dir, no log line and no memory dump of the proxy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from tests.hardening.harness import ProxyProcess, s3_client
from tests.kms.softhsm import PIN, SoftHsm, files_hold, memory_holds

ATTRIBUTES = """
import pkcs11, sys
from pkcs11 import Attribute as A, KeyType, ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
with token.open(user_pin=sys.argv[3]) as s:
    key = s.get_key(label=sys.argv[4], key_type=KeyType.AES, object_class=ObjectClass.SECRET_KEY)
    out = {n: bool(key[getattr(A, n)]) for n in ("TOKEN", "SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE",
                                                  "ALWAYS_SENSITIVE", "WRAP", "UNWRAP", "DERIVE")}
    try:
        key[A.VALUE]
        out["value"] = "readable"
    except pkcs11.AttributeSensitive:
        out["value"] = "sensitive"
print(__import__("json").dumps(out))
"""

# what an operator does to move an existing root key into a token: create it there from its value, sensitive and
# never extractable again (the test does it to know the value it then searches for)
PUT_KNOWN_KEY = """
import pkcs11, sys
from pkcs11 import Attribute as A, KeyType, ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
with token.open(user_pin=sys.argv[3], rw=True) as s:
    s.create_object({A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.AES, A.TOKEN: True, A.LABEL: sys.argv[4],
                     A.VALUE: bytes.fromhex(sys.argv[5]), A.SENSITIVE: True, A.EXTRACTABLE: False,
                     A.ENCRYPT: True, A.DECRYPT: True})
"""


def _proxy(tmp_path, hsm: SoftHsm, uri: str, name: str = "data") -> ProxyProcess:
    return ProxyProcess(tmp_path / name, env={**hsm.env, "S3PROXY_ROOT_KEY": uri, "S3PROXY_PKCS11_MODULE": hsm.module},
                        log=tmp_path / f"{name}.log", log_level="info")


def kms_client(url: str):
    import boto3
    from botocore.config import Config

    from tests.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY

    return boto3.client("kms", endpoint_url=url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"max_attempts": 1}))


def test_root_key_generated_in_the_token_serves_and_restarts(tmp_path, softhsm):
    softhsm.init_token("s3proxy")
    proxy = _proxy(tmp_path, softhsm, softhsm.uri("s3proxy", "s3proxy-root")).start()
    try:
        kms = kms_client(proxy.url)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"sealed via the token")["CiphertextBlob"]
        s3 = s3_client(proxy.url)
        s3.create_bucket(Bucket="hsm")
        s3.put_object(Bucket="hsm", Key="o", Body=b"object body", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
    finally:
        proxy.stop()
    assert not (tmp_path / "data" / "root.key").exists()
    attrs = json.loads(_attrs(softhsm, "s3proxy", "s3proxy-root"))
    assert attrs == {"TOKEN": True, "SENSITIVE": True, "EXTRACTABLE": False, "NEVER_EXTRACTABLE": True,
                     "ALWAYS_SENSITIVE": True, "WRAP": False, "UNWRAP": False, "DERIVE": False, "value": "sensitive"}
    assert "generated the root key 's3proxy-root' inside PKCS#11 token" in (tmp_path / "data.log").read_text()
    again = _proxy(tmp_path, softhsm, softhsm.uri("s3proxy", "s3proxy-root")).start()  # a restart with the HSM root
    try:
        assert kms_client(again.url).decrypt(CiphertextBlob=blob)["Plaintext"] == b"sealed via the token"
        assert s3_client(again.url).get_object(Bucket="hsm", Key="o")["Body"].read() == b"object body"
    finally:
        again.stop()


def _attrs(hsm: SoftHsm, token: str, label: str) -> str:
    done = subprocess.run([sys.executable, "-c", ATTRIBUTES, hsm.module, token, PIN, label],
                          env={**os.environ, **hsm.env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _fails_to_start(tmp_path, hsm: SoftHsm, uri: str, name: str = "data") -> str:
    done = subprocess.run([sys.executable, "-m", "s3proxy", "serve", "--port", "0", "--data-dir", str(tmp_path / name)],
                          env={**os.environ, **hsm.env, "S3PROXY_ROOT_KEY": uri, "S3PROXY_PKCS11_MODULE": hsm.module},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    return done.stderr


def test_configuration_errors_are_clear(tmp_path, softhsm):
    softhsm.init_token("s3proxy")
    assert "PIN for token pkcs11:token=s3proxy;object=r is incorrect" in _fails_to_start(
        tmp_path, softhsm, softhsm.uri("s3proxy", "r", pin="00000000"))
    assert "no token matches pkcs11:token=nosuch;object=r" in _fails_to_start(tmp_path, softhsm, softhsm.uri("nosuch", "r"))
    err = _fails_to_start(tmp_path, softhsm, "pkcs11:token=s3proxy;object=r?pin-value=1&module-name=x")
    assert "module-path" in err and "pin-value=1" not in err
    # a keystore sealed under one token key does not open under another: refused, never re-created
    proxy = _proxy(tmp_path, softhsm, softhsm.uri("s3proxy", "first")).start()
    kms_client(proxy.url).create_key()
    proxy.stop()
    assert "root key does not match this keystore" in _fails_to_start(tmp_path, softhsm, softhsm.uri("s3proxy", "second"))


def test_token_gone_while_serving_fails_clearly_loses_nothing_and_recovers(tmp_path, softhsm):
    softhsm.init_token("s3proxy")
    uri = softhsm.uri("s3proxy", "s3proxy-root")
    proxy = _proxy(tmp_path, softhsm, uri).start()
    try:
        kms, s3 = kms_client(proxy.url), s3_client(proxy.url)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"before")["CiphertextBlob"]
        s3.create_bucket(Bucket="gone")
        s3.put_object(Bucket="gone", Key="before", Body=b"1", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
        softhsm.take_away()
        for change in (lambda: kms.create_key(), lambda: kms.disable_key(KeyId=key),
                       lambda: kms.tag_resource(KeyId=key, Tags=[{"TagKey": "a", "TagValue": "b"}])):
            with pytest.raises(ClientError) as e:
                change()
            assert e.value.response["Error"]["Code"] == "KMSInternalException"
            assert "PKCS#11 token" in e.value.response["Error"]["Message"]
        # keys already open keep serving: decrypt, data keys, SSE-KMS reads and writes
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
        assert s3.get_object(Bucket="gone", Key="before")["Body"].read() == b"1"
        s3.put_object(Bucket="gone", Key="during", Body=b"2", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"  # the refused disable left no trace
        softhsm.bring_back()
        other = kms.create_key()["KeyMetadata"]["KeyId"]  # back without a restart
        kms.tag_resource(KeyId=key, Tags=[{"TagKey": "a", "TagValue": "b"}])
    finally:
        proxy.stop()
    log = (tmp_path / "data.log").read_text()
    assert "is unavailable" in log and "is back" in log
    again = _proxy(tmp_path, softhsm, uri).start()
    try:
        kms, s3 = kms_client(again.url), s3_client(again.url)
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
        assert kms.describe_key(KeyId=other)["KeyMetadata"]["KeyState"] == "Enabled"
        assert [t["TagKey"] for t in kms.list_resource_tags(KeyId=key)["Tags"]] == ["a"]
        assert [s3.get_object(Bucket="gone", Key=k)["Body"].read() for k in ("before", "during")] == [b"1", b"2"]
    finally:
        again.stop()


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs /proc to read a process's memory")
def test_the_root_key_value_is_in_no_file_log_or_memory_dump(tmp_path, softhsm):
    softhsm.init_token("s3proxy")
    value = os.urandom(32)
    subprocess.run([sys.executable, "-c", PUT_KNOWN_KEY, softhsm.module, "s3proxy", PIN, "known-root", value.hex()],
                   env={**os.environ, **softhsm.env}, check=True, capture_output=True, timeout=60)
    proxy = _proxy(tmp_path, softhsm, softhsm.uri("s3proxy", "known-root")).start()
    try:
        kms = kms_client(proxy.url)
        for _ in range(5):  # sealing and unsealing under the root key, many times
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            kms.tag_resource(KeyId=key, Tags=[{"TagKey": "k", "TagValue": "v"}])
            kms.generate_data_key(KeyId=key, KeySpec="AES_256")
        assert proxy.proc is not None
        assert not memory_holds(proxy.proc.pid, value), "the root key's value is in the proxy's memory"
    finally:
        proxy.stop()
    assert files_hold(tmp_path / "data", value) == [] and files_hold(tmp_path, value) == []
    # the check can find a key: with a root key file, the same search finds it in the proxy's memory
    (tmp_path / "file-root").mkdir(mode=0o700)
    (tmp_path / "file-root" / "root.key").write_bytes(value)
    os.chmod(tmp_path / "file-root" / "root.key", 0o600)
    control = ProxyProcess(tmp_path / "file-root").start()
    try:
        kms_client(control.url).create_key()
        assert control.proc is not None and memory_holds(control.proc.pid, value)
    finally:
        control.stop()
