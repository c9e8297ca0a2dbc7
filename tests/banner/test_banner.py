"""banner: what `serve` prints — where to point a client, the root key's place, stop and drain lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3proxy import banner, settings
from s3proxy.auth.credentials import Credential


def test_a_wildcard_listener_is_dialled_on_loopback() -> None:
    assert banner.client_url("http://0.0.0.0:8080") == "http://127.0.0.1:8080"
    assert banner.client_url("https://[::]:9000") == "https://[::1]:9000"
    assert banner.client_url("http://proxy.example:8080") == "http://proxy.example:8080"


def test_a_generated_pair_is_shown_once_with_the_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = settings.load({}, env={})
    generated = Credential("AKIAGENERATED", "secret with spaces")
    lines = banner.started(s, "http://0.0.0.0:8080", generated=generated, tls=None)
    assert lines[0].startswith("s3proxy listening on http://0.0.0.0:8080 (backend fs")
    assert "  export AWS_ACCESS_KEY_ID=AKIAGENERATED AWS_SECRET_ACCESS_KEY='secret with spaces'" in lines
    assert "  export AWS_ENDPOINT_URL=http://127.0.0.1:8080 AWS_DEFAULT_REGION=us-east-1" in lines
    again = banner.started(s, "http://127.0.0.1:8080", generated=None, tls=None, access_key="AKIAGENERATED")
    assert not any("secret with spaces" in line for line in again)  # read from the file by the shell, never printed


def test_the_root_key_line_says_where_it_is_and_warns_about_the_old_place(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = settings.load({}, env={})
    assert banner.root_key_line(s).startswith("root key: data.root.key (back it up apart")
    Path("data").mkdir()
    Path("data/root.key").write_bytes(b"")
    assert "inside the data dir where older versions made it" in banner.root_key_line(s)
    assert "mv data/root.key data.root.key" in banner.root_key_line(s)


def test_stopping_and_stopped_count_what_is_in_flight_and_cut_off() -> None:
    assert banner.stopping("SIGTERM", 0, 30) == "s3proxy stopping (SIGTERM): no request in flight"
    assert "2 requests in flight finish within 30 s" in banner.stopping("SIGTERM", 2, 30)
    assert "4 workers finish" in banner.stopping("SIGINT", 0, 5, workers=4)
    assert banner.stopped(1.25, 30, 0) == "s3proxy stopped after 1.2 s: every request finished"
    assert "1 request still running after 30 s cut off" in banner.stopped(30.0, 30, 1)
