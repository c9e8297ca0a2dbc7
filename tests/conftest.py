"""Fixtures shared by every test package: real servers on loopback, never mocks."""

from __future__ import annotations

import os
import pathlib
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Subprocesses (the CLI, awscli, the proxy) must import this tree's s3proxy, whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
# botocore and awscli must never find real credentials or reach AWS from the suite.
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)
os.environ.setdefault("AWS_CONFIG_FILE", os.devnull)
os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_server():
    """A real moto server over HTTP (S3 and KMS), shared by the session; use unique bucket names."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def moto_proxy(tmp_path_factory, moto_server):
    """A proxy per module in front of the real moto server (so a test can write to the backend
    directly, as a pre-existing bucket would be): the operator tools, UpdateObjectEncryption."""
    from tests.e2e.conftest import start_proxy

    thread, endpoint = start_proxy(tmp_path_factory.mktemp("moto-proxy"), "s3", moto_server)
    yield endpoint
    thread.stop()


@pytest.fixture(scope="module")
def fs_proxy(tmp_path_factory):
    """A proxy per module over the filesystem backend."""
    from tests.e2e.conftest import start_proxy

    thread, endpoint = start_proxy(tmp_path_factory.mktemp("fs-proxy"), "fs", None)
    yield endpoint
    thread.stop()


@pytest.fixture
def unique_bucket() -> str:
    return f"b-{uuid.uuid4().hex[:20]}"


# --- every log line the suite produces is scanned for key material ------------------------------

import logging  # noqa: E402
import re  # noqa: E402

# base64 of exactly 32 bytes (an SSE-C key or a data key), or 64 hex digits (the same in hex)
_KEY_LIKE = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])|(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Tests name secrets (secret access keys, ...) that must never reach a log line."""
    _SECRETS.add(value)


class _LogScanner(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.findings: list[str] = []
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("s3proxy"):
            return
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is a finding of its own
            text = str(record.msg)
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines += 1
        if _KEY_LIKE.search(text) or any(secret in text for secret in _SECRETS):
            self.findings.append(f"{record.name}: {text[:300]}")


_SCANNER = _LogScanner()


def pytest_sessionstart(session):
    logger = logging.getLogger("s3proxy")
    logger.addHandler(_SCANNER)
    logger.setLevel(logging.DEBUG)


def pytest_sessionfinish(session, exitstatus):
    logging.getLogger("s3proxy").removeHandler(_SCANNER)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: its findings go to the controller, which reports them
        workeroutput["log_findings"] = _SCANNER.findings
        workeroutput["log_lines"] = _SCANNER.lines
        return
    if _SCANNER.findings:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"KEY MATERIAL IN LOGS ({len(_SCANNER.findings)} of {_SCANNER.lines} lines):", red=True)
            for finding in _SCANNER.findings[:20]:
                reporter.write_line("  " + finding, red=True)
        session.exitstatus = 1


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The xdist controller gathers each worker's scan, so a parallel run fails on key material as a serial one does."""
    output = getattr(node, "workeroutput", None) or {}
    _SCANNER.findings.extend(output.get("log_findings", ()))
    _SCANNER.lines += output.get("log_lines", 0)


# --- tiers: `scripts/test -m "not e2e and not interop and not packaging"` is the fast tier (units) ------

_TIERS = {
    # live servers on loopback (the proxy, moto, SeaweedFS) driven by real clients and tools
    # (and, beside the unit tests of their package: the operator tools, keystore care and observability
    # against a running proxy, UpdateObjectEncryption through boto3, malloc tuning measured in fresh interpreters)
    "e2e": ("e2e/", "hardening/", "cse/", "scale/", "workers/test_workers.py", "auth/test_e2e.py", "kms/test_through_proxy.py",
            "kms/test_cli.py", "kms/test_keystore_care.py", "tools/test_bulk_tools.py", "app/test_observability.py",
            "app/test_malloc_tuning.py", "ops/test_update_object_encryption.py",
            "backends/test_s3_backend.py", "backends/test_backend_contract.py"),
    # other implementations, run for real against ours: official SDKs, awscli, the README and examples, and the
    # clients people bring (interop/: rclone, s3cmd, minio-py, s3fs)
    "interop": ("cse/test_official_ruby.py", "cse/test_official_python.py", "kms/test_s3_encryption_client.py",
                "e2e/test_sse_awscli.py", "test_examples.py", "test_docs.py", "interop/"),
    # what ships beside the code: container files, benchmarks, published results
    "packaging": ("test_docker.py", "test_docker_scale.py", "test_benchmarks_smoke.py", "test_publish_smoke.py"),
}


def pytest_collection_modifyitems(config, items):
    tests_dir = pathlib.Path(__file__).resolve().parent
    for item in items:
        try:
            rel = pathlib.Path(str(item.fspath)).resolve().relative_to(tests_dir).as_posix()
        except ValueError:
            continue
        for marker, prefixes in _TIERS.items():
            if rel.startswith(prefixes):
                item.add_marker(marker)


class _LongestFirst:
    """Run order for a parallel run (`scripts/test` runs pytest-xdist, one file per worker at a time, files
    handed out in this order): files with a slow test or of the packaging tier first, then the other live
    tiers, the many short unit files last, where they fill the gaps while the last long file ends. A file
    stays in one piece (its module fixtures are set up once), and the order within a file is unchanged."""

    @pytest.hookimpl(trylast=True)  # after the tiers are marked, -m has deselected and fixtures have grouped
    def pytest_collection_modifyitems(self, items):
        weight: dict[str, int] = {}
        for item in items:
            path = str(item.fspath)
            if item.get_closest_marker("slow") or item.get_closest_marker("packaging"):
                weight[path] = 0
            elif item.get_closest_marker("e2e") or item.get_closest_marker("interop"):
                weight[path] = min(weight.get(path, 1), 1)
            else:
                weight.setdefault(path, 2)
        items.sort(key=lambda item: weight[str(item.fspath)])  # stable: each file keeps its own order


def pytest_configure(config):
    config.pluginmanager.register(_LongestFirst(), "s3proxy-longest-first")


# --- a real PostgreSQL server (the shared keystore's database), started once per session ---------


@pytest.fixture(scope="session")
def pg_server():
    from tests.pg import PgServer

    server = PgServer().start()
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return pg_server.new_database()
