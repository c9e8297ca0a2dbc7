"""settings: flags over environment over the config file over defaults, each value parsed and checked
once, with a message that names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3proxy import settings


def test_defaults_are_the_embedded_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = settings.load({}, env={})
    assert (s.host, s.port, s.backend, s.ssec_over_http, s.sigv2, s.https) == ("127.0.0.1", 8080, "fs", "loopback", True, False)
    assert s.root_key_path == Path("data.root.key")  # beside the data dir, never inside it
    Path("data").mkdir()
    Path("data/root.key").write_bytes(b"")  # an older version's key inside the data dir is still used
    assert s.root_key_path == Path("data") / "root.key"


def test_layers_flags_over_environment_over_file(tmp_path: Path) -> None:
    config = tmp_path / "s3proxy.toml"
    config.write_text('port = 9000\nregion = "eu-west-1"\nsigv2 = false\nkms_admins = "root, ops"\n'
                      '[[credentials]]\naccess_key = "AK1"\nsecret_key = "SK1"\n')
    s = settings.load({"port": "9100"}, env={"S3PROXY_CONFIG": str(config), "S3PROXY_PORT": "9050",
                                             "S3PROXY_REGION": "eu-central-1"})
    assert (s.port, s.region, s.sigv2, s.admin_users) == (9100, "eu-central-1", False, ("root", "ops"))
    assert [(c.access_key, c.user_name) for c in s.credentials] == [("AK1", "AK1")]
    assert settings.load({}, env={"S3PROXY_PORT": ""}).port == 8080  # an empty variable is unset


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"port": "70000"}, "port (S3PROXY_PORT): must be 0..65535"),
        ({"backend": "gcs"}, "backend (S3PROXY_BACKEND): must be one of fs, s3, not 'gcs'"),
        (
            {"ssec_over_http": "sometimes"},
            "ssec_over_http (S3PROXY_SSEC_OVER_HTTP): must be one of never, loopback, always, not 'sometimes'",
        ),
        ({"sigv2": "maybe"}, "sigv2 (S3PROXY_SIGV2): not a boolean: 'maybe'"),
        ({"access_key": "AK"}, "access_key and secret_key must be given together"),
        ({"backend": "s3"}, "backend=s3 needs backend_url (S3PROXY_BACKEND_URL)"),
        ({"account_id": "12345"}, "account_id must be 12 digits"),
        ({"host": "two words"}, "host: not an address or host name: 'two words'"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(flags: dict[str, str], message: str) -> None:
    with pytest.raises(settings.SettingsError) as raised:
        settings.load(flags, env={})
    assert str(raised.value) == message


def test_a_config_file_with_an_unknown_setting_or_a_bad_credential_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("prot = 80\n")
    with pytest.raises(settings.SettingsError, match="unknown setting"):
        settings.load({"config": str(config)}, env={})
    config.write_text('[[credentials]]\naccess_key = "AK"\n')
    with pytest.raises(settings.SettingsError, match=r"\[\[credentials\]\] entry 1 needs access_key and secret_key"):
        settings.load({"config": str(config)}, env={})


def test_describe_redacts_secrets_and_the_reference_lists_every_setting() -> None:
    s = settings.load({"access_key": "AK", "secret_key": "very-secret", "backend": "s3", "backend_url": "http://x:9000",
                       "backend_secret_key": "backend-secret"}, env={})
    described = settings.describe(s)
    assert described["secret_key"] == described["backend_secret_key"] == "<redacted>" and described["access_key"] == "AK"
    reference = settings.reference_markdown()
    assert all(f"`{f.name}`" in reference and f"`{f.env}`" in reference for f in settings.FIELDS)
