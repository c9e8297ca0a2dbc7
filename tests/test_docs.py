"""The README and docs/ cannot rot: the quick start stays first, the configuration reference is the
one the code generates, links resolve, and the README's awscli and boto3 recipes run against a live
proxy (real awscli, real boto3, the fs backend on loopback)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from s3proxy.app import ProxyThread
from s3proxy.settings import load, reference_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
OWN_DOCS = ("README.md", "docs/CONFIGURATION.md", "docs/SECURITY.md", "docs/TROUBLESHOOTING.md")
ACCESS, SECRET = "AKIARECIPES000000001", "recipes-secret-key-0001/abcdefghijklmnop"


def test_readme_starts_with_the_two_commands():
    """The proxy's first command and the test command, exactly (.ci/run runs the second one, then the
    static checks tests/test_static.py also runs)."""
    commands = [line.strip() for line in README.splitlines() if line.startswith("    ")][:2]
    assert commands == ["python3 -m pip install -e . && s3proxy serve", "scripts/test"]
    steps = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert steps[-3:] == ["scripts/test", "python3 -m mypy s3proxy", "python3 -m ruff check s3proxy tests"], steps
    assert README.index("## Quick start") < README.index("## What it is")


def test_configuration_reference_is_what_the_settings_generate():
    text = (ROOT / "docs/CONFIGURATION.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- BEGIN s3proxy config --reference -->\n(.*)<!-- END s3proxy config --reference -->", text, re.S)
    assert block, "markers missing"
    assert block.group(1) == reference_markdown(), "docs/CONFIGURATION.md drifted: paste `python3 -m s3proxy config --reference`"


@pytest.mark.parametrize("doc", OWN_DOCS)
def test_relative_links_resolve(doc):
    path = ROOT / doc
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8"))
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, f"{doc} links nothing"
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, missing


def test_security_model_says_losing_the_root_key_loses_everything():
    text = (ROOT / "docs/SECURITY.md").read_text(encoding="utf-8")
    assert "If the root key is lost, every object stored through s3proxy is unreadable" in text
    assert "Losing the root key" in README


def recipe(kind: str) -> str:
    """The fenced block right after `<!-- tested: kind -->` in the README."""
    match = re.search(rf"<!-- tested: {kind} -->\n```\w+\n(.*?)\n```", README, re.S)
    assert match, f"no tested {kind} recipe in the README"
    return match.group(1)


@pytest.fixture(scope="module")
def recipe_env(tmp_path_factory):
    """A proxy like the README's (fs backend, data in ./data), `aws` and `s3proxy` on PATH, the README's exports."""
    cwd = tmp_path_factory.mktemp("recipes")
    thread = ProxyThread(
        load({"port": "0", "data_dir": str(cwd / "data"), "access_key": ACCESS, "secret_key": SECRET}, env={})
    ).start()
    shims = cwd / "bin"
    shims.mkdir()
    for name, module in (("aws", "awscli"), ("s3proxy", "s3proxy")):
        shim = shims / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    scratch = tmp_path_factory.mktemp("tmpdir")  # where mktemp makes the awscli recipe's scratch dir
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", "AWS_ENDPOINT_URL": thread.url,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET,
           "TMPDIR": str(scratch)}
    yield cwd, env
    thread.stop()


def _what_is_left(cwd: Path, env: dict[str, str]) -> tuple[list[str], list[str], list[str], list[str]]:
    """(files in the recipes' directory, in their TMPDIR, buckets in the proxy, its aliases and keys not pending deletion)."""
    import boto3

    s3, kms = (boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id=ACCESS, aws_secret_access_key=SECRET) for service in ("s3", "kms"))
    live = [k["KeyId"] for k in kms.list_keys()["Keys"]
            if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion"]
    return (sorted(p.name for p in cwd.iterdir()), sorted(p.name for p in Path(env["TMPDIR"]).iterdir()),
            [b["Name"] for b in s3.list_buckets()["Buckets"]], [a["AliasName"] for a in kms.list_aliases()["Aliases"]] + live)


def test_awscli_recipes_run_in_a_scratch_dir_and_leave_nothing_behind(recipe_env):
    cwd, env = recipe_env
    before = _what_is_left(cwd, env)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe("awscli")], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("my secret") == 4  # sse-kms cp -, sse-c cp -, kms decrypt, cse get
    assert '"AES256"' in out and '"Enabled"' in out and "alias/recipes" in out
    assert "OK" in out and "chain intact" in out  # s3proxy audit verify
    assert "remove_bucket: recipes" in out
    assert _what_is_left(cwd, env) == before  # no secret.txt, sse-c.key or blob.*, here or in TMPDIR; nothing in the proxy


def test_boto3_recipes_run_and_leave_nothing_behind(recipe_env):
    cwd, env = recipe_env
    before = _what_is_left(cwd, env)
    proc = subprocess.run([sys.executable, "-c", recipe("boto3")], cwd=cwd, env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _what_is_left(cwd, env) == before


def test_gitignore_covers_what_the_quick_start_and_demo_create():
    """`s3proxy serve` in the checkout makes data/ and data.root.key; the demo writes report/; the awscli
    recipe, run the old way in the checkout, made sse-c.key (a raw key)."""
    made = ["data/credentials.toml", "data.root.key", "report/compare_modes.md", "sse-c.key", ".venv/s3fs/bin/python"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *made], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.split() == made, proc.stdout + proc.stderr
