"""tls: the self-signed local CA and server certificate (made, reused, made again), and the operator's pair."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from s3proxy import settings, tls


def _alt_names(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return {str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}


def test_names_are_the_loopback_ones_and_a_named_host_never_a_wildcard() -> None:
    assert tls.certificate_names("127.0.0.1") == tls.certificate_names("0.0.0.0") == tls.certificate_names("::")
    assert tls.certificate_names("Proxy.Example") == (*tls.certificate_names("::"), "proxy.example")


def test_self_signed_is_made_private_reused_and_made_again_when_names_change_or_it_nears_expiry(tmp_path: Path) -> None:
    names = tls.certificate_names("127.0.0.1")
    first = tls.self_signed(tmp_path / "tls", names)
    assert first.made and first.ca is not None
    assert {"localhost", "127.0.0.1", "::1"} <= _alt_names(first.cert)
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    # the CA signed the certificate, and a client that trusts only ca.pem accepts the server
    ca = x509.load_pem_x509_certificate(first.ca.read_bytes())
    x509.load_pem_x509_certificate(first.cert.read_bytes()).verify_directly_issued_by(ca)
    assert tls.server_context(first).verify_mode is not None
    again = tls.self_signed(tmp_path / "tls", names)
    assert not again.made and again.cert.read_bytes() == first.cert.read_bytes()
    renamed = tls.self_signed(tmp_path / "tls", (*names, "proxy.example"))
    assert renamed.made and "proxy.example" in _alt_names(renamed.cert)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    assert tls.self_signed(tmp_path / "tls", renamed.names, now=later).made  # too close to expiry: new files


def test_a_damaged_key_is_replaced_not_served(tmp_path: Path) -> None:
    names = tls.certificate_names("127.0.0.1")
    first = tls.self_signed(tmp_path / "tls", names)
    first.key.write_bytes(b"not a key")
    assert tls.self_signed(tmp_path / "tls", names).made


def test_the_operators_pair_is_used_as_given_and_a_bad_one_names_the_setting(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("no certificate")
    key.write_text("no key")
    s = settings.load({"tls_cert": str(cert), "tls_key": str(key), "data_dir": str(tmp_path / "d")}, env={})
    files = tls.prepare(s)
    assert files is not None and (files.cert, files.key, files.ca) == (cert, key, None)
    with pytest.raises(tls.TlsError, match="tls_cert/tls_key"):
        tls.server_context(files)
    assert tls.prepare(settings.load({"data_dir": str(tmp_path / "d")}, env={})) is None
    assert isinstance(tls.server_context(tls.self_signed(tmp_path / "tls", ("localhost",))), ssl.SSLContext)
