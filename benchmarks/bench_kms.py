"""Benchmark: GenerateDataKey and Decrypt per second, in-process, via KmsApi.dispatch, and over HTTP with boto3.

Run: `python3 benchmarks/bench_kms.py [--seconds 2]`. Prints a table; never asserts. The HTTP row
uses the test server from tests/kms/conftest.py (aiohttp on loopback, signature not verified),
so it measures boto3 + HTTP + JSON + the service; the lead's real app adds SigV4 verification.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s3proxy.kms.caller import Caller  # noqa: E402
from s3proxy.kms.api import KmsApi  # noqa: E402
from s3proxy.kms.service import KeyService  # noqa: E402

CTX = {"aws:s3:arn": "arn:aws:s3:::bucket/some/object/key"}


def rate(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(calls per second, microseconds per call) over about `seconds`."""
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / elapsed, elapsed / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        svc = KeyService.open(Path(tmp) / "inproc")
        alice = Caller("AKIAALICE000000000001", "alice", "000000000000", via_service="s3.us-east-1.amazonaws.com")
        kid = svc.create_key(alice).key_id
        blob = svc.generate_data_key(alice, kid, CTX).ciphertext_blob
        rows.append(("in-process", "GenerateDataKey", *rate(lambda: svc.generate_data_key(alice, kid, CTX), args.seconds)))
        rows.append(("in-process", "Decrypt", *rate(lambda: svc.decrypt_data_key(alice, blob, CTX), args.seconds)))

        api = KmsApi(svc)
        gdk = json.dumps({"KeyId": kid, "KeySpec": "AES_256", "EncryptionContext": CTX}).encode()
        dec = json.dumps({"CiphertextBlob": base64.b64encode(blob).decode(), "EncryptionContext": CTX}).encode()
        rows.append(("KmsApi.dispatch", "GenerateDataKey", *rate(lambda: api.dispatch("TrentService.GenerateDataKey", gdk, alice), args.seconds)))
        rows.append(("KmsApi.dispatch", "Decrypt", *rate(lambda: api.dispatch("TrentService.Decrypt", dec, alice), args.seconds)))
        svc.close()

        from tests.kms.conftest import KmsServer

        server = KmsServer(Path(tmp) / "http")
        client = server.client()
        hkid = client.create_key()["KeyMetadata"]["KeyId"]
        hblob = client.generate_data_key(KeyId=hkid, KeySpec="AES_256", EncryptionContext=CTX)["CiphertextBlob"]
        rows.append(("boto3 over HTTP", "GenerateDataKey", *rate(
            lambda: client.generate_data_key(KeyId=hkid, KeySpec="AES_256", EncryptionContext=CTX), args.seconds)))
        rows.append(("boto3 over HTTP", "Decrypt", *rate(
            lambda: client.decrypt(CiphertextBlob=hblob, EncryptionContext=CTX), args.seconds)))
        server.close()

    print(f"{'path':<18} {'operation':<16} {'ops/s':>10} {'us/op':>9}")
    for path, op, per_s, us in rows:
        print(f"{path:<18} {op:<16} {per_s:>10.0f} {us:>9.1f}")


if __name__ == "__main__":
    main()
