"""app: the composition root's own decisions, without serving: where client credentials come from,
the data dir made private, and which backend the settings name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from s3proxy import app, settings


def load(tmp_path: Path, **flags: str) -> settings.Settings:
    return settings.load({"data_dir": str(tmp_path / "data"), **flags}, env={})


def test_credentials_from_settings_come_first(tmp_path: Path) -> None:
    boot = app.load_credentials(load(tmp_path, access_key="AKFLAG", secret_key="flag-secret-value"))
    assert boot.generated is None and boot.credentials.lookup("AKFLAG").secret_key == "flag-secret-value"
    assert boot.secret_keys == ("flag-secret-value",)


def test_a_first_start_generates_a_pair_once_in_a_private_file(tmp_path: Path) -> None:
    s = load(tmp_path)
    app.prepare_data_dir(s)
    first = app.load_credentials(s)
    assert first.generated is not None and first.generated.access_key.startswith("S3P")
    path = s.data_dir / app.CREDENTIALS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = app.load_credentials(s)  # the second start reads the file, generates nothing
    assert again.generated is None and again.credentials.lookup(first.generated.access_key) is not None
    assert first.generated.secret_key not in repr(first.generated)


def test_a_damaged_credentials_file_stops_the_start_with_a_reason(tmp_path: Path) -> None:
    s = load(tmp_path)
    app.prepare_data_dir(s)
    (s.data_dir / app.CREDENTIALS_FILE).write_text("[[credentials]]\nuser = 'no keys'\n")
    with pytest.raises(app.StartupError, match=r"credentials.toml: \[\[credentials\]\] entry 1 needs access_key and secret_key"):
        app.load_credentials(s)


def test_the_data_dir_is_made_private_and_a_loose_one_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = load(tmp_path)
    s.data_dir.mkdir(mode=0o755)
    os.chmod(s.data_dir, 0o755)
    (s.data_dir / "old.log").write_bytes(b"x")
    os.chmod(s.data_dir / "old.log", 0o644)
    with caplog.at_level("WARNING", logger="s3proxy"):
        app.prepare_data_dir(s)
    assert stat.S_IMODE(os.stat(s.data_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(s.data_dir / "old.log").st_mode) == 0o600
    assert any("made 2 files and directories" in r.getMessage() for r in caplog.records)


def test_the_backend_is_the_one_the_settings_name(tmp_path: Path) -> None:
    from s3proxy.backends.fs import FsBackend
    from s3proxy.backends.s3 import S3Backend

    assert isinstance(app.make_backend(load(tmp_path)), FsBackend)
    assert isinstance(app.make_backend(load(tmp_path, backend="s3", backend_url="http://127.0.0.1:9")), S3Backend)
