"""`s3proxy serve --workers N`: worker processes on one port, over the embedded SQLite keystore
and over PostgreSQL. Which worker served a call is read from the per-worker audit chains (each
record carries the request id the client got back)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.hardening.harness import ACCESS_KEY, SECRET_KEY, ProxyProcess
from tests.scale.conftest import BOUND

pytestmark = pytest.mark.slow


def kms_client(url: str) -> Any:
    """A client on a fresh connection, so the kernel may hand it to any worker."""
    return boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"max_attempts": 1}))


class Workers:
    def __init__(self, data: Path, proc: ProxyProcess, keystore: list[str]) -> None:
        self.data, self.proc = data, proc
        self.keystore = keystore  # the keystore flags (the audit chains' key lives there)

    def served_by(self, request_id: str) -> int:
        for log in sorted((self.data / "kms").glob("audit.w*.log")):
            if request_id.encode() in log.read_bytes():
                return int(log.name[7:-4])
        raise AssertionError(f"request {request_id} is in no worker's audit log")

    def call(self, op: Callable[[Any], Any]) -> tuple[int, Any]:
        """(worker index, result or ClientError) of `op(client)` on a fresh connection."""
        client = kms_client(self.proc.url)
        try:
            out: Any = op(client)
            rid = out["ResponseMetadata"]["RequestId"]
        except ClientError as exc:
            out, rid = exc, exc.response["ResponseMetadata"]["RequestId"]
        finally:
            client.close()
        return self.served_by(rid), out

    def observe_everywhere(self, writer: int, check: Callable[[Any], bool], op: Callable[[Any], Any]) -> float:
        """After a change made on worker `writer`: the time until another worker showed it; every
        answer after the bound must show it."""
        began = time.monotonic()
        first_other = None
        while time.monotonic() - began < BOUND + 0.5:
            worker, out = self.call(op)
            ok = check(out)
            elapsed = time.monotonic() - began
            if elapsed > BOUND:
                assert ok, f"worker {worker} still stale {elapsed:.2f} s after the change"
            if ok and worker != writer and first_other is None:
                first_other = elapsed
                if elapsed <= BOUND:
                    break
        assert first_other is not None and first_other <= BOUND, f"no other worker showed the change within {BOUND} s"
        return first_other


@pytest.fixture(params=["sqlite", "postgresql"])
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    keystore = ["--keystore-url", request.getfixturevalue("pg_url")] if request.param == "postgresql" else []
    proc = ProxyProcess(tmp_path, extra=["--workers", "2", "--log-level", "warning", *keystore]).start()
    yield Workers(tmp_path, proc, keystore)
    proc.stop()


def test_two_workers_see_each_others_changes_within_the_bound(workers: Workers) -> None:
    seen: dict[str, float] = {}
    writer, made = workers.call(lambda c: c.create_key(Description="one"))
    key = made["KeyMetadata"]["KeyId"]
    # a key made on one worker is usable on every worker at once (a miss reads through)
    for _ in range(6):
        assert workers.call(lambda c: c.describe_key(KeyId=key))[1]["KeyMetadata"]["KeyId"] == key

    def change(label: str, op: Callable[[Any], Any], check: Callable[[Any], bool], probe: Callable[[Any], Any]) -> None:
        writer, out = workers.call(op)
        assert not isinstance(out, ClientError), out
        seen[label] = workers.observe_everywhere(writer, check, probe)

    describe = lambda c: c.describe_key(KeyId=key)  # noqa: E731
    change("describe", lambda c: c.update_key_description(KeyId=key, Description="two"),
           lambda out: out["KeyMetadata"]["Description"] == "two", describe)
    alias = f"alias/w-{uuid.uuid4().hex[:8]}"
    change("alias", lambda c: c.create_alias(AliasName=alias, TargetKeyId=key),
           lambda out: alias in {a["AliasName"] for a in out["Aliases"]}, lambda c: c.list_aliases())
    blob = workers.call(lambda c: c.encrypt(KeyId=alias, Plaintext=b"w"))[1]["CiphertextBlob"]
    for _ in range(4):
        assert workers.call(lambda c: c.decrypt(CiphertextBlob=blob))[1]["Plaintext"] == b"w"
    change("rotate", lambda c: c.rotate_key_on_demand(KeyId=key),
           lambda out: len(out["Rotations"]) == 1, lambda c: c.list_key_rotations(KeyId=key))
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "a", "Effect": "Allow", "Resource": "*", "Action": "kms:*",
                                                      "Principal": {"AWS": "arn:aws:iam::000000000000:root"}}]}
    change("policy", lambda c: c.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy)),
           lambda out: json.loads(out["Policy"]) == policy, lambda c: c.get_key_policy(KeyId=key, PolicyName="default"))
    change("disable", lambda c: c.disable_key(KeyId=key),
           lambda out: isinstance(out, ClientError) and out.response["Error"]["Code"] == "DisabledException",
           lambda c: c.encrypt(KeyId=key, Plaintext=b"x"))
    change("delete", lambda c: c.schedule_key_deletion(KeyId=key, PendingWindowInDays=7),
           lambda out: out["KeyMetadata"]["KeyState"] == "PendingDeletion", describe)
    print("seconds until another worker showed it:", {k: round(v, 3) for k, v in seen.items()})


def test_metrics_sum_every_worker_and_audit_verify_checks_every_chain(workers: Workers) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:  # concurrent connections: an idle worker accepts while another is busy
        served = set(pool.map(lambda _: workers.call(lambda c: c.generate_random(NumberOfBytes=8))[0], range(32)))
    import urllib.request

    text = urllib.request.urlopen(workers.proc.url + "/metrics", timeout=10).read().decode()
    line = next(x for x in text.splitlines() if x.startswith("s3proxy_kms_operations_total") and "GenerateRandom" in x)
    assert float(line.rsplit(" ", 1)[1]) == 32.0  # every worker's count, whichever worker answered /metrics
    assert len(served) == 2, served  # the kernel handed connections to both workers
    assert sum(1 for x in text.splitlines() if x.startswith("s3proxy_inflight_requests{")) == 2  # one gauge per worker
    out = subprocess.run([sys.executable, "-m", "s3proxy", "audit", "verify", "--data-dir", str(workers.data),
                          *workers.keystore],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "audit.w1.log: OK" in out.stdout and "audit.w2.log: OK" in out.stdout


def test_reload_replaces_workers_without_refusing_a_request_and_shutdown_is_clean(tmp_path: Path) -> None:
    proc = ProxyProcess(tmp_path, extra=["--workers", "2", "--log-level", "warning"]).start()
    assert proc.proc is not None
    supervisor = psutil.Process(proc.proc.pid)
    try:
        deadline = time.monotonic() + 30
        while len(supervisor.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = {p.pid for p in supervisor.children()}
        errors: list[str] = []
        done = threading.Event()
        count = 0

        def load() -> None:
            nonlocal count
            while not done.is_set():
                client = kms_client(proc.url)
                try:
                    client.generate_random(NumberOfBytes=4)
                    count += 1
                except Exception as exc:  # any failure during the reload is a refused request
                    errors.append(type(exc).__name__)
                finally:
                    client.close()

        t = threading.Thread(target=load)
        t.start()
        time.sleep(0.5)
        os.kill(proc.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = {p.pid for p in supervisor.children()}
            if len(now) == 2 and not now & before:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        done.set()
        t.join(30)
        after = {p.pid for p in supervisor.children()}
        assert len(after) == 2 and not after & before, (before, after)
        assert errors == [] and count > 0, errors

        # a worker that dies is started again
        victim = next(iter(after))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (len(supervisor.children()) == 2 and victim not in
                                                   {p.pid for p in supervisor.children()}):
            time.sleep(0.1)
        assert len(supervisor.children()) == 2
        children = supervisor.children()
    finally:
        proc.stop()
    assert proc.proc.returncode == 0
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


def test_reload_reads_the_settings_again_and_changes_the_worker_count(tmp_path: Path) -> None:
    config = tmp_path / "s3proxy.toml"
    config.write_text("workers = 2\n")
    proc = ProxyProcess(tmp_path / "d", extra=["--config", str(config), "--log-level", "warning"]).start()
    assert proc.proc is not None
    supervisor = psutil.Process(proc.proc.pid)

    def settle(count: int) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(supervisor.children()) == count:
                return True
            time.sleep(0.1)
        return False

    try:
        assert settle(2)
        config.write_text("workers = 3\n")
        os.kill(proc.proc.pid, signal.SIGHUP)
        assert settle(3)
        config.write_text("workers = not-a-number\n")  # a bad edit keeps what runs
        os.kill(proc.proc.pid, signal.SIGHUP)
        time.sleep(1)
        assert len(supervisor.children()) == 3
        assert kms_client(proc.url).generate_random(NumberOfBytes=4)["Plaintext"]
    finally:
        proc.stop()
    assert proc.proc.returncode == 0
