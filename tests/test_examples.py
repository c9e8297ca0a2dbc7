"""Every example runs, as a user runs it, against a live proxy: the README's `s3proxy serve` (fs backend,
generated credentials, examples reading ./data) and a proxy in front of a real moto server (examples
reading the backend with --backend-url). Assertions are on what the examples print, and each expected
answer is AWS's documented one (shared/reference/s3-sse-and-kms.md §1.2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from s3proxy.app import ProxyThread
from s3proxy.settings import load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ACCESS, SECRET = "AKIAEXAMPLESDEMO0001", "examples-demo-secret-key-0001/abcdefghij"


def readme_table() -> dict[str, tuple[str, ...]]:
    """The comparison table in README.md, row title -> cells."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| | En/decrypt |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = tuple(cells[1:])
    return rows


@dataclass
class Target:
    """A running proxy and the arguments an example needs to reach it and to look behind it."""

    name: str
    args: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, script: str, *extra: str, timeout: float = 110, args: list[str] | None = None) -> str:
        """Run an example; unless --keep, check it left no bucket and no live KMS key of its own behind."""
        env = {**os.environ, **self.env}
        env.pop("AWS_ACCESS_KEY_ID", None)
        env.pop("AWS_SECRET_ACCESS_KEY", None)
        proc = subprocess.run([sys.executable, str(EXAMPLES / script), *(self.args if args is None else args), *extra],
                              cwd=self.cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        if "--keep" not in extra:
            assert self.leftovers() == ([], []), proc.stdout
        return proc.stdout

    def client(self, service: str):
        import tomllib

        import boto3

        first = tomllib.loads((self.cwd / "data" / "credentials.toml").read_text())["credentials"][0] \
            if "--access-key" not in self.args else {"access_key": ACCESS, "secret_key": SECRET}
        return boto3.client(service, endpoint_url=self.args[self.args.index("--endpoint") + 1], region_name="us-east-1",
                            aws_access_key_id=first["access_key"], aws_secret_access_key=first["secret_key"])

    def leftovers(self) -> tuple[list[str], list[str]]:
        """(the demo buckets that exist, the demo KMS keys not pending deletion)."""
        buckets = [b["Name"] for b in self.client("s3").list_buckets()["Buckets"] if b["Name"].startswith("demo-")]
        kms = self.client("kms")
        live = []
        for key in kms.list_keys()["Keys"]:
            meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
            if meta["Description"].startswith("s3proxy demo") and meta["KeyState"] != "PendingDeletion":
                live.append(key["KeyId"])
        return buckets, live


@pytest.fixture(scope="module")
def readme_proxy(tmp_path_factory):
    """`s3proxy serve` exactly as the README starts it (fs backend under ./data, credentials generated),
    except on a free port; the examples run in the same directory and find ./data themselves."""
    cwd = tmp_path_factory.mktemp("readme")
    proc = subprocess.Popen([sys.executable, "-m", "s3proxy", "serve", "--port", "0"], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stdout.readline()  # "s3proxy listening on http://127.0.0.1:PORT (...)"
        assert "listening on" in first, first
        url = first.split("listening on ")[1].split()[0]
        yield Target("readme-fs", ["--endpoint", url], cwd)
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture(scope="module")
def moto_proxy(tmp_path_factory, moto_server):
    """The proxy in front of a real moto server; the examples read moto directly to show what is at rest."""
    data = tmp_path_factory.mktemp("moto-proxy")
    settings = load({"port": "0", "data_dir": str(data), "access_key": ACCESS, "secret_key": SECRET, "backend": "s3",
                     "backend_url": moto_server, "backend_access_key": "backend", "backend_secret_key": "backend"}, env={})
    thread = ProxyThread(settings).start()
    yield Target(
        "moto",
        [
            "--endpoint",
            thread.url,
            "--access-key",
            ACCESS,
            "--secret-key",
            SECRET,
            "--data-dir",
            str(data),
            "--backend-url",
            moto_server,
            "--backend-access-key",
            "backend",
            "--backend-secret-key",
            "backend",
        ],
        data,
    )
    thread.stop()


@pytest.fixture(params=["readme_proxy", "moto_proxy"], ids=["readme-fs-backend", "moto-backend"])
def target(request) -> Target:
    return request.getfixturevalue(request.param)


def common_story(out: str) -> None:
    assert "GET with this mode's parameters: the same bytes" in out
    assert "plaintext in backend bytes or metadata: no" in out
    # a byte flipped at rest is never served (docs/FORMAT.md §3: every chunk is authenticated)
    assert "one byte flipped at rest, then GET: ok" not in out


def test_sse_s3_example(target):
    out = target.run("sse_s3.py")
    common_story(out)
    assert "response x-amz-server-side-encryption: AES256" in out  # PutObject echoes the mode (§1.1)
    assert "GET with S3 credentials only: the plaintext" in out  # SSE-S3 is transparent to readers
    assert "KMS calls for the PUT: {'proxy GenerateDataKey': 1}" in out
    assert "this user's kms:Decrypt of the stored wrapped key: ok" not in out
    assert "one byte flipped at rest, then GET: HTTP 5" in out


def test_sse_c_example(target):
    out = target.run("sse_c.py")
    common_story(out)
    assert "GET with S3 credentials only: HTTP 400 InvalidRequest" in out  # §1.2: no SSE-C headers
    assert "GET with a wrong customer key: HTTP 403 AccessDenied" in out  # §1.2: wrong key
    assert "customer key bytes anywhere at rest: no" in out  # S3 never stores the key (§1.1)
    assert "KMS calls for the PUT: none" in out


def test_sse_kms_example(target):
    out = target.run("sse_kms.py")
    common_story(out)
    assert "response x-amz-server-side-encryption: aws:kms" in out
    assert "GET when key disabled: HTTP 400 KMS.DisabledException" in out  # §1.2
    assert "GET when key pending deletion: HTTP 400 KMS.KMSInvalidStateException" in out  # §1.2
    # S3 answers 403 AccessDenied when the requester may not use the KMS key (S3 user guide, UsingKMSEncryption)
    assert "GET when key policy denies kms:Decrypt: HTTP 403 AccessDenied" in out
    assert "GET when key restored: ok" in out


def test_client_side_example(target):
    out = target.run("client_side.py")
    common_story(out)
    assert "bytes that are NOT the plaintext (ciphertext)" in out
    assert "'x-s3proxy-client-side-encryption': 'v3'" in out
    assert "'client GenerateDataKey': 1" in out  # the client, not the proxy, asked KMS for the data key
    assert "client GET when key disabled: CseError: KMS decrypt failed: DisabledException" in out
    assert "client GET when key restored: ok" in out
    assert "client GET with another keyring: KeyringMismatch" in out


def test_compare_modes_writes_table_markdown_and_chart(target, tmp_path):
    out_dir = tmp_path / f"report-{uuid.uuid4().hex[:6]}"
    out = target.run("compare_modes.py", "--out", str(out_dir), "--bench-size", str(256 * 1024), "--rounds", "1")
    summary = json.loads(next(line for line in out.splitlines() if line.startswith('{"summary"')))["summary"]
    cells = {mode: tuple(row.values()) for mode, row in summary.items()}
    # each cell was computed from observations; they must be what the README's table promises, which is
    # the seed's table (shared/seed) with s3proxy as "the server" and the KMS-keyed CSE row added
    assert cells == readme_table()
    assert cells["SSE-S3"] == ("server (s3proxy)", "server (s3proxy keystore)", "server (s3proxy)", "Server")
    assert cells["CSE (client key)"] == ("client", "client", "client", "Client")
    markdown = (out_dir / "compare_modes.md").read_text()
    assert "| | En/decrypt | Secret key - storage | Secret key - management | Server or Client Encryption |" in markdown.replace(
        "|  |", "| |"
    )
    assert markdown.count("**absent**") == 5 and "**FOUND**" not in markdown
    assert "| SSE-C | HTTP 400 InvalidRequest | HTTP 403 AccessDenied |" in markdown
    assert "HTTP 400 KMS.DisabledException | HTTP 400 KMS.KMSInvalidStateException | HTTP 403 AccessDenied |" in markdown
    from PIL import Image

    with Image.open(out_dir / "compare_modes.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 800 and image.size[1] > 600


def test_an_example_that_cannot_read_the_audit_log_counts_kms_calls_from_metrics(moto_proxy, tmp_path):
    """Against a proxy elsewhere (its data dir not readable here): KMS calls come from /metrics, and
    without those either they are "not counted", never "none"."""
    elsewhere = list(moto_proxy.args)
    elsewhere[elsewhere.index("--data-dir") + 1] = str(tmp_path)  # no audit log there
    out = moto_proxy.run("sse_kms.py", args=elsewhere)
    assert "KMS calls for the PUT: {'any GenerateDataKey': 1}" in out
    assert "KMS calls: {'any Decrypt': 1}" in out
    out = moto_proxy.run("sse_kms.py", "--metrics-url", "http://127.0.0.1:9/metrics", args=elsewhere)
    assert "KMS calls for the PUT: not counted" in out and "KMS calls: not counted" in out
    # the comparison still fills every cell of the README's table from what it observes
    out = moto_proxy.run("compare_modes.py", "--out", str(tmp_path / "report"), "--bench-size", "65536", "--rounds", "1",
                         args=elsewhere)
    summary = json.loads(next(line for line in out.splitlines() if line.startswith('{"summary"')))["summary"]
    assert {mode: tuple(row.values()) for mode, row in summary.items()} == readme_table()
    assert "KMS calls from http://127.0.0.1:" in (tmp_path / "report" / "compare_modes.md").read_text()


def test_examples_clean_up_after_themselves_unless_kept(moto_proxy):
    out = moto_proxy.run("sse_kms.py")
    assert "cleaned up: bucket demo-sse-kms-" in out and "scheduled for deletion in 7 days" in out
    out = moto_proxy.run("sse_s3.py", "--keep")
    assert "kept (--keep): buckets demo-sse-s3-" in out
    left, _ = moto_proxy.leftovers()
    assert len(left) == 1
    s3 = moto_proxy.client("s3")
    for obj in s3.list_objects_v2(Bucket=left[0]).get("Contents", []):
        s3.delete_object(Bucket=left[0], Key=obj["Key"])
    s3.delete_bucket(Bucket=left[0])
