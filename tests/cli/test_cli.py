"""cli: the command line's shape and its answers to bad input, in process (the e2e tier runs the
commands for real: tests/e2e/test_cli.py, tests/kms/test_keystore_care.py, tests/tools/)."""

from __future__ import annotations

import pytest

from s3proxy import cli, settings


def test_every_command_is_there() -> None:
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) >= {"serve", "config", "audit", "kms", "rewrap", "encrypt-existing", "cse"}
    args = parser.parse_args(["kms", "backup", "archive.bin", "--include-root-key", "--data-dir", "/tmp/d"])
    assert (args.kms_command, args.archive, args.include_root_key, args.data_dir) == ("backup", "archive.bin", True, "/tmp/d")


def test_config_prints_the_effective_settings_with_secrets_redacted(capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for f in settings.FIELDS:
        monkeypatch.delenv(f.env, raising=False)
    assert cli.main(["config", "--access-key", "AK", "--secret-key", "do-not-print-me", "--port", "9001"]) == 0
    out = capsys.readouterr().out
    assert "port = 9001" in out and "secret_key = <redacted>" in out and "do-not-print-me" not in out


def test_a_bad_setting_is_exit_code_2_with_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--port", "-1"]) == 2
    assert capsys.readouterr().err == "s3proxy: bad setting: port (S3PROXY_PORT): must be 0..65535\n"


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["frobnicate"])
    assert raised.value.code == 2 and "invalid choice" in capsys.readouterr().err
