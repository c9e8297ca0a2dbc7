"""HTTPS for the listener: the operator's certificate (tls_cert/tls_key), or `tls = self-signed`.

`self-signed` gives the quick start HTTPS in one step (SSE-C needs it in most clients: rclone's and
minio's refuse to send a customer key over plain HTTP). It makes a local CA and one server
certificate signed by it, kept in DATA_DIR/tls:

  ca.pem    the CA's certificate: what clients are told to trust (AWS_CA_BUNDLE, rclone --ca-cert,
            s3cmd --ca-certs)
  cert.pem  the server's certificate, for localhost, 127.0.0.1, ::1 and the listening host when
            that is one address or name
  key.pem   the server's private key

The CA's private key signs that one certificate and is then dropped, never written anywhere: a copy
of the data dir cannot issue another certificate under it. The CA is also name-constrained (RFC 5280
§4.2.1.10) to exactly the names of its certificate, so a client that trusts ca.pem trusts it for
those names only, never for another site. The files are reused across restarts and made again
(new CA, new certificate) when one is missing or does not match, the certificate has less than 30
days left, or the names changed; clients keep the same path to ca.pem.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import private
from .settings import Settings

if TYPE_CHECKING:
    from cryptography import x509

TLS_DIR = "tls"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
VALIDITY = dt.timedelta(days=397)  # the longest a server certificate may live for Apple's clients
RENEW_BEFORE = dt.timedelta(days=30)
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class TlsError(Exception):
    """The certificate or key cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None = None  # the local CA clients trust (self-signed only)
    names: tuple[str, ...] = ()  # what the self-signed certificate is for
    made: bool = False  # made on this start (else found and reused)


def certificate_names(host: str) -> tuple[str, ...]:
    """The loopback names, and `host` when it names one address or host (not a wildcard)."""
    host = host.strip("[]")
    extra = () if host in _WILDCARD_HOSTS or host in LOOPBACK_NAMES else (host.lower(),)
    return (*LOOPBACK_NAMES, *extra)


def prepare(settings: Settings) -> TlsFiles | None:
    """The files the listener serves HTTPS with (made or checked now), or None for plain HTTP."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        return TlsFiles(settings.tls_cert, settings.tls_key)
    if settings.tls == "self-signed":
        return self_signed(settings.data_dir / TLS_DIR, certificate_names(settings.host))
    return None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"tls_cert/tls_key: {exc}") from None
    return context


def self_signed(directory: Path, names: tuple[str, ...], *, now: dt.datetime | None = None) -> TlsFiles:
    """The local CA and server certificate in `directory`: reused when still good for `names`, else made."""
    now = now or dt.datetime.now(dt.UTC)
    ca_path = directory / "ca.pem"
    files = TlsFiles(directory / "cert.pem", directory / "key.pem", ca_path, names)
    if _still_good(files, names, now):
        return files
    try:
        private.make_dir(directory)
        ca_pem, cert_pem, key_pem = _issue(names, now)
        for path, data in ((files.key, key_pem), (files.cert, cert_pem), (ca_path, ca_pem)):
            temporary = path.with_name(path.name + ".tmp")
            private.write_file(temporary, data, fsync=True)
            os.replace(temporary, path)
    except OSError as exc:
        raise TlsError(f"cannot write the self-signed certificate in {directory}: {exc.strerror or exc}") from None
    return TlsFiles(files.cert, files.key, ca_path, names, made=True)


def _general_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    from cryptography import x509

    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _issue(names: tuple[str, ...], now: dt.datetime) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key), all PEM; the CA's key is not kept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s3proxy"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"s3proxy local CA {now:%Y-%m-%d %H:%M:%S}")])
    alt_names = _general_names(names)
    permitted = [x509.IPAddress(ipaddress.ip_network(n.value)) if isinstance(n, x509.IPAddress) else n for n in alt_names]
    start, end = now - dt.timedelta(minutes=5), now + VALIDITY
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    return ca.public_bytes(serialization.Encoding.PEM), server.public_bytes(serialization.Encoding.PEM), key_pem


def _still_good(files: TlsFiles, names: tuple[str, ...], now: dt.datetime) -> bool:
    """Whether the three files exist, belong together, cover exactly `names` and have 30 days left."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    assert files.ca is not None
    try:
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # unreadable, not a pair, not issued by that CA (InvalidSignature): make them again
        return False
    same_key = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    wanted = {repr(n) for n in _general_names(names)}
    fresh = min(cert.not_valid_after_utc, ca.not_valid_after_utc) - now > RENEW_BEFORE and cert.not_valid_before_utc <= now
    return same_key and fresh and {repr(n) for n in alt} == wanted
