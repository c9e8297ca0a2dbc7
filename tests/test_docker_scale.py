"""docker-compose.scale.yml (three replicas, PostgreSQL, MinIO, HAProxy), checked without a Docker
engine: `docker-compose config` resolves it as a user sets it up, `haproxy -c` accepts the load
balancer's configuration, and the parts that must agree with the code and with each other do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from s3proxy.http.metrics import OPERATIONAL_PATHS
from s3proxy.settings import FIELDS
from tests.system_packages import command, require

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = "docker-compose.scale.yml"
REPLICAS = ("s3proxy-1", "s3proxy-2", "s3proxy-3")


def _setup(d: Path, env_text: str | None = None) -> Path:
    for name in (COMPOSE, "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, d / name)
    (d / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "haproxy.cfg", d / "deploy" / "haproxy.cfg")
    (d / ".env").write_text(env_text if env_text is not None else (ROOT / ".env.example").read_text())
    return d


def _config(d: Path) -> subprocess.CompletedProcess:
    require("docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "S3PROXY_", "POSTGRES_", "PG"))}
    return subprocess.run([str(command("docker-compose")), "-f", COMPOSE, "config"], cwd=d, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict:
    proc = _config(_setup(tmp_path_factory.mktemp("scale")))
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["services"]


def test_three_replicas_share_one_postgresql_keystore_one_backend_and_one_root_key(services: dict) -> None:
    assert set(REPLICAS) | {"postgres", "minio", "loadbalancer"} == set(services)
    pg = services["postgres"]["environment"]
    data_volumes = set()
    for name in REPLICAS:
        replica = services[name]
        env = replica["environment"]
        assert env["S3PROXY_KEYSTORE_URL"] == f"postgresql://{pg['POSTGRES_USER']}@postgres:5432/{pg['POSTGRES_DB']}"
        assert env["PGPASSWORD"] == pg["POSTGRES_PASSWORD"]  # the password stays out of the URL
        assert env["S3PROXY_BACKEND_URL"] == "http://minio:9000" and int(env["S3PROXY_WORKERS"]) >= 1
        mounts = {v.split(":")[1] if isinstance(v, str) else v["target"]: v.split(":")[0] if isinstance(v, str) else v["source"]
                  for v in replica["volumes"]}
        assert mounts["/keys"] == "s3proxy-keys"  # one root key for all
        data_volumes.add(mounts["/data"])  # each replica's own audit chain
        assert "ports" not in replica  # reached through the load balancer only
        assert replica["healthcheck"]["test"]
    assert len(data_volumes) == 3
    # the first replica makes the root key and the keystore tables; the others start after it
    for name in REPLICAS[1:]:
        assert services[name]["depends_on"]["s3proxy-1"]["condition"] == "service_healthy"
    assert services["s3proxy-1"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    lb = services["loadbalancer"]
    assert lb["image"].startswith("haproxy:") and services["postgres"]["image"].startswith("postgres:")
    assert lb["ports"] and all("127.0.0.1" in str(p) for p in lb["ports"])
    assert not any("ports" in services[s] for s in ("postgres", "minio"))


def test_every_s3proxy_variable_is_a_real_setting() -> None:
    used = set(re.findall(r"\bS3PROXY_[A-Z_]+", (ROOT / COMPOSE).read_text()))
    assert used and used <= {f.env for f in FIELDS}, used - {f.env for f in FIELDS}


def test_compose_refuses_to_start_without_a_postgresql_password(tmp_path: Path) -> None:
    env = "\n".join(x for x in (ROOT / ".env.example").read_text().splitlines() if not x.startswith("POSTGRES_PASSWORD"))
    proc = _config(_setup(tmp_path, env))
    assert proc.returncode != 0 and "set POSTGRES_PASSWORD in .env" in proc.stderr


def test_haproxy_accepts_the_load_balancer_and_checks_readiness_on_every_replica() -> None:
    require("haproxy")
    cfg = ROOT / "deploy" / "haproxy.cfg"
    proc = subprocess.run([str(command("haproxy")), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = cfg.read_text()
    assert re.findall(r"^\s*server (\S+) (\S+):8080", text, re.M) == [(r, r) for r in REPLICAS]
    probe = re.search(r"option httpchk GET (\S+)", text)
    assert probe and probe.group(1) in OPERATIONAL_PATHS and probe.group(1) == "/readyz"
