"""One frozen settings tree, from defaults < TOML file < environment (S3PROXY_*) < command-line flags.

Every setting is declared once in FIELDS (name, type, default, help); flags, environment names,
validation and the configuration reference in the docs are all derived from that table.
Secrets are redacted in repr.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import pathlib
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .kms.wrapping import LEGACY_ROOT_KEY_NAME, root_key_location

ENV_PREFIX = "S3PROXY_"


class SettingsError(Exception):
    """A setting is missing, malformed or unusable; the message says which and why."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be 0..65535")
    return value


def _positive(value: float) -> float:
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _grace(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise ValueError("must be a number of seconds from 0 to 3600")
    return value


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"must be an integer of at least {low}")
        return value

    return parse


def _listen(text: str) -> str:
    """HOST:PORT (IPv6 as [ADDR]:PORT), or empty for none."""
    text = str(text).strip()
    if not text:
        return ""
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]") or any(c.isspace() for c in host):
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9100")
    _port(port)
    return text


def _path(text: str) -> pathlib.Path:
    return pathlib.Path(str(text)).expanduser()


def _url(text: str) -> str:
    parsed = urllib.parse.urlsplit(str(text))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return str(text).rstrip("/")


def _keystore_url(text: str) -> str:
    from .kms.keystore import check_url

    return check_url(str(text))


def _workers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise ValueError("must be 1..64")
    return value


def _pkcs11_uri(text: str) -> str:
    if not str(text).startswith("pkcs11:"):
        raise ValueError("must be an RFC 7512 URI starting with pkcs11:, e.g. pkcs11:token=s3proxy;object=s3proxy-root")
    return str(text)


def _opt(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda text: None if text in ("", None) else kind(text)


FIELDS: tuple[Field, ...] = (
    Field("config", _opt(_path), None, "TOML file with any of these settings (keys as the names below)"),
    Field("host", str, "127.0.0.1", "address to listen on"),
    Field("port", _port, 8080, "port to listen on (0 picks a free port)"),
    Field("data_dir", _path, pathlib.Path("data"), "directory for the embedded backend, keystore, audit log and credentials"),
    Field("access_key", _opt(str), None, "client access key id (with secret_key); more pairs via [[credentials]] in the config file"),
    Field("secret_key", _opt(str), None, "client secret access key", secret=True),
    Field("virtual_host_domains", str, "", "comma-separated endpoint domains for virtual-hosted-style requests (bucket.DOMAIN); path style always works"),
    Field("region", str, "us-east-1", "region this endpoint answers for (ARNs, GetBucketLocation)"),
    Field("account_id", str, "000000000000", "12-digit account of the access_key pair, the generated pair and credentials.toml users"),
    Field("backend", str, "fs", "where objects are stored: fs (a local directory) or s3 (any S3 endpoint)", choices=("fs", "s3")),
    Field("backend_url", _opt(_url), None, "S3 backend endpoint URL (backend=s3)"),
    Field("backend_region", str, "us-east-1", "S3 backend region (backend=s3)"),
    Field("backend_access_key", _opt(str), None, "S3 backend access key id (backend=s3)"),
    Field("backend_secret_key", _opt(str), None, "S3 backend secret access key (backend=s3)", secret=True),
    Field("backend_timeout", lambda t: _positive(float(t)), 60.0, "seconds a backend may stay silent (connect or read) before the request fails with 503 (backend=s3)"),
    Field("backend_addressing", str, "path", "S3 backend addressing style", choices=("path", "virtual")),
    Field("tls", str, "", "self-signed: serve HTTPS with a certificate for localhost, 127.0.0.1 and ::1 from a local CA made in DATA_DIR/tls and kept across restarts (clients trust it with AWS_CA_BUNDLE); or give tls_cert and tls_key", choices=("self-signed",)),
    Field("tls_cert", _opt(_path), None, "PEM certificate chain: serve HTTPS (with tls_key)"),
    Field("tls_key", _opt(_path), None, "PEM private key for tls_cert", secret=False),
    Field("root_key_file", _opt(_path), None, "file holding the KMS root key, created 0600 on first start; default DATA_DIR.root.key beside the data dir, never inside it (a DATA_DIR/root.key made by an older version is still used)"),
    # keys from elsewhere (docs/KMS.md): a root key in a PKCS#11 token; SSE-KMS through an external KMS
    Field("root_key", _opt(_pkcs11_uri), None, "RFC 7512 pkcs11: URI of the KMS root key inside a PKCS#11 token, used instead of root_key_file (generated in the token, non-extractable, on first start); shown redacted, as it may hold pin-value", secret=True),
    Field("pkcs11_module", _opt(_path), None, "PKCS#11 module (.so) for root_key and for the tokens of custom key stores (Origin AWS_CLOUDHSM, docs/KMS.md), e.g. /usr/lib/softhsm/libsofthsm2.so"),
    Field("pkcs11_pin", _opt(str), None, "user PIN of root_key's token, when its URI has no pin-value or pin-source", secret=True),
    Field("kms_url", _opt(_url), None, "an AWS-KMS-compatible endpoint (AWS KMS, LocalStack, another s3proxy) that serves SSE-KMS and bucket keys instead of the internal KMS"),
    Field("kms_region", _opt(str), None, "region of kms_url (default: region)"),
    Field("kms_access_key", _opt(str), None, "access key id the proxy signs its kms_url calls with"),
    Field("kms_secret_key", _opt(str), None, "secret access key for kms_url", secret=True),
    Field("kms_admins", str, "", "comma-separated user names (of account_id) or user ARNs named, beside the creator, in the default policy of each new KMS key of their account"),
    Field("internal_bucket", str, "s3proxy-internal", "backend bucket where the proxy keeps its own records (bucket defaults, multipart part lists); hidden from clients"),
    Field("read_format_v1", _bool, True, "read objects and internal records written in at-rest format version 1 (before format 2; their metadata is not authenticated); turn off once `s3proxy rewrap --upgrade` finds none left (docs/FORMAT.md §19.4)"),
    Field("sigv2", _bool, True, "accept AWS Signature Version 2 (boto3 still presigns S3 URLs with it by default); false refuses it as S3 regions opened since 2014 do"),
    Field("ssec_over_http", str, "loopback", "accept SSE-C over plain HTTP: never, loopback (clients on this host only) or always", choices=("never", "loopback", "always")),
    Field("max_header_bytes", _at_least(4096), 32768, "most bytes a request line and its headers may take; past it the answer is 400 RequestHeaderSectionTooLarge and the connection closes"),
    Field("header_timeout", lambda t: _positive(float(t)), 20.0, "seconds a request's headers may take to arrive once they start; a slower connection is closed"),
    Field("idle_timeout", lambda t: _positive(float(t)), 60.0, "seconds a kept-alive connection may wait for its next request before it is closed"),
    Field("max_connections", _at_least(1), 1024, "most client connections open at once; a connection past it is answered 503 SlowDown and closed"),
    Field("listing_cache_bytes", _at_least(0), 16 * 1024 * 1024,
          "most bytes the listing cache may take (the plaintext size and ETag of objects this proxy wrote or read, "
          "so a listing needs no HEAD per object; about 250 bytes per object name; least recently used names leave "
          "first; 0 keeps none)"),
    Field("ready_interval", lambda t: _positive(float(t)), 5.0, "seconds between readiness probes of the backend and keystore (GET /readyz answers the last one)"),
    Field("metrics_listen", _listen, "", "HOST:PORT of a separate listener for /metrics, /healthz and /readyz; when set, the main port no longer serves /metrics"),
    Field("log_level", str, "info", "log level", choices=("debug", "info", "warning", "error")),
    Field("shutdown_grace", _grace, 10.0, "seconds that requests in flight may take to finish after SIGTERM or SIGINT (no new connections are taken meanwhile); then they are cut off"),
    # scale-out (docs/SCALING.md): the shared keystore and worker processes
    Field("keystore_url", _opt(_keystore_url), None, "KMS keystore: sqlite:///PATH (default DATA_DIR/kms/keystore.sqlite3) or postgresql://... shared by many proxies (libpq URL; multi-host with target_session_attrs=read-write follows a failover; the password is better in PGPASSWORD or a passfile)", secret=True),
    Field("workers", _workers, 1, "worker processes serving the one port (serve only); each has its own audit log DATA_DIR/kms/audit.wN.log"),
)
_BY_NAME = {f.name: f for f in FIELDS}


@dataclass(frozen=True)
class CredentialEntry:
    """One [[credentials]] table: an access key pair, its user, account (None: derived) and identity policy text."""

    access_key: str
    secret_key: str = field(repr=False)
    user_name: str
    account: str | None = None
    policy: str | None = field(default=None, repr=False)  # the JSON text, inline or read from policy_file
    policy_source: str = ""  # where the policy came from, for messages ("inline", or the file's path)


_CREDENTIAL_MEMBERS = {"access_key", "secret_key", "user", "account", "policy", "policy_file"}


def credential_entries(tables: Any, where: pathlib.Path) -> tuple[CredentialEntry, ...]:
    """The [[credentials]] tables of the TOML file `where` (policy_file paths are relative to its directory)."""
    if not isinstance(tables, list):
        raise SettingsError(f"config file {where}: [[credentials]] must be an array of tables")
    out = []
    for i, entry in enumerate(tables, start=1):
        label = f"config file {where}: [[credentials]] entry {i}"
        if not isinstance(entry, dict) or "access_key" not in entry or "secret_key" not in entry:
            raise SettingsError(f"{label} needs access_key and secret_key")
        unknown = sorted(set(entry) - _CREDENTIAL_MEMBERS)
        if unknown:  # a misspelt `policy` must not leave a user with full access
            raise SettingsError(f"{label}: unknown member(s) {', '.join(unknown)}")
        account = entry.get("account")
        if account is not None and not (isinstance(account, str) and len(account) == 12 and account.isdigit()):
            raise SettingsError(f'{label}: account must be a quoted 12-digit string, e.g. account = "111122223333"')
        if "policy" in entry and "policy_file" in entry:
            raise SettingsError(f"{label}: give policy or policy_file, not both")
        policy, source = entry.get("policy"), "inline"
        if "policy_file" in entry:
            path = where.parent / _path(entry["policy_file"])
            source = str(path)
            try:
                policy = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{label}: policy_file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if policy is not None and not isinstance(policy, str):
            raise SettingsError(f"{label}: policy must be a string holding a JSON policy document")
        out.append(CredentialEntry(str(entry["access_key"]), str(entry["secret_key"]),
                                   str(entry.get("user", entry["access_key"])), account, policy, source))
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    config: pathlib.Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: pathlib.Path = pathlib.Path("data")
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    virtual_host_domains: str = ""
    region: str = "us-east-1"
    account_id: str = "000000000000"
    backend: str = "fs"
    backend_url: str | None = None
    backend_region: str = "us-east-1"
    backend_access_key: str | None = None
    backend_secret_key: str | None = field(default=None, repr=False)
    backend_timeout: float = 60.0
    backend_addressing: Literal["path", "virtual"] = "path"  # Field "backend_addressing" checks the choice
    tls: str = ""
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    root_key_file: pathlib.Path | None = None
    root_key: str | None = field(default=None, repr=False)  # may carry pin-value
    pkcs11_module: pathlib.Path | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)
    kms_url: str | None = None
    kms_region: str | None = None
    kms_access_key: str | None = None
    kms_secret_key: str | None = field(default=None, repr=False)
    kms_admins: str = ""
    internal_bucket: str = "s3proxy-internal"
    read_format_v1: bool = True
    sigv2: bool = True
    ssec_over_http: str = "loopback"
    max_header_bytes: int = 32768
    header_timeout: float = 20.0
    idle_timeout: float = 60.0
    max_connections: int = 1024
    listing_cache_bytes: int = 16 * 1024 * 1024
    ready_interval: float = 5.0
    metrics_listen: str = ""
    log_level: str = "info"
    shutdown_grace: float = 10.0
    keystore_url: str | None = field(default=None, repr=False)
    workers: int = 1
    credentials: tuple[CredentialEntry, ...] = ()  # from the config file's [[credentials]] tables

    @property
    def root_key_path(self) -> pathlib.Path:
        """root_key_file; else the root key an older version made inside the data dir, while it is there;
        else the default, beside the data dir (`default_root_key`)."""
        return root_key_location(self.data_dir, self.root_key_file)

    @property
    def legacy_root_key(self) -> pathlib.Path:
        """Where versions before 0.2 kept the root key by default: inside the data dir, so that a copy of
        the data dir (a backup, a volume snapshot) carried the key to all of it."""
        return self.data_dir / LEGACY_ROOT_KEY_NAME

    @property
    def host_domains(self) -> tuple[str, ...]:
        return tuple(d.strip().lower().strip(".") for d in self.virtual_host_domains.split(",") if d.strip())

    @property
    def admin_users(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.kms_admins.split(",") if n.strip())

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the separate operational listener, or None."""
        if not self.metrics_listen:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def https(self) -> bool:
        return self.tls_cert is not None or self.tls == "self-signed"


def _shown_default(f: Field) -> str:
    """The default as `--help` shows it ('' when there is none to show)."""
    if f.default is None or f.default == "":
        return ""
    if isinstance(f.default, bool):
        return "true" if f.default else "false"
    return str(f.default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field, its help naming the default and the environment variable; unset flags stay
    None so lower layers show through."""
    for f in FIELDS:
        default = _shown_default(f)
        shown = f" (default: {default})" if default else ""
        text = f"{f.help}{shown} [env {f.env}]".replace("%", "%%")  # argparse %-formats help
        metavar = "{" + ",".join(f.choices) + "}" if f.choices else f.name.upper()
        parser.add_argument(f.flag, dest=f.name, default=None, help=text, metavar=metavar)


def load(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers and validate once; raise SettingsError with a clear message."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None and k in _BY_NAME}
    raw: dict[str, Any] = {}
    config_path = flags.get("config") or env.get(_BY_NAME["config"].env) or None
    credentials: tuple[CredentialEntry, ...] = ()
    if config_path:
        file_values, credentials = _read_toml(_path(config_path))
        raw.update(file_values)
    for f in FIELDS:
        if f.env in env and env[f.env] != "":
            raw[f.name] = env[f.env]
    raw.update(flags)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        f = _BY_NAME[name]
        try:
            values[name] = f.kind(value if isinstance(value, str) else str(value))
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{f.name} ({f.env}): {exc}") from None
        if f.choices and values[name] not in f.choices:
            raise SettingsError(f"{f.name} ({f.env}): must be one of {', '.join(f.choices)}, not {values[name]!r}")
    settings = Settings(**values, credentials=credentials)
    _validate(settings)
    return settings


def _read_toml(path: pathlib.Path) -> tuple[dict[str, Any], tuple[CredentialEntry, ...]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    creds = credential_entries(data.pop("credentials", []) or [], path)
    unknown = sorted(set(data) - set(_BY_NAME))
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    # every layer hands strings to the field parsers; TOML booleans read as "true"/"false"
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()}, creds


def _validate(s: Settings) -> None:
    if (s.access_key is None) != (s.secret_key is None):
        raise SettingsError("access_key and secret_key must be given together")
    if (s.tls_cert is None) != (s.tls_key is None):
        raise SettingsError("tls_cert and tls_key must be given together")
    if s.root_key and s.root_key_file:
        raise SettingsError("give root_key (a PKCS#11 token) or root_key_file, not both")
    if s.kms_url and not (s.kms_access_key and s.kms_secret_key):
        raise SettingsError("kms_url needs kms_access_key and kms_secret_key (the proxy's own credentials there)")
    if s.tls and s.tls_cert is not None:
        raise SettingsError("tls=self-signed makes its own certificate: give it or tls_cert/tls_key, not both")
    if s.backend == "s3" and not s.backend_url:
        raise SettingsError("backend=s3 needs backend_url (S3PROXY_BACKEND_URL)")
    if not (len(s.account_id) == 12 and s.account_id.isdigit()):
        raise SettingsError("account_id must be 12 digits")
    try:
        ipaddress.ip_address(s.host)
    except ValueError:
        if not s.host or any(c.isspace() for c in s.host):
            raise SettingsError(f"host: not an address or host name: {s.host!r}") from None


def describe(s: Settings) -> dict[str, str]:
    """Settings as strings with secrets redacted, for logs and `s3proxy config`."""
    out = {}
    for f in FIELDS:
        value = getattr(s, f.name)
        out[f.name] = "<redacted>" if f.secret and value else ("" if value is None else str(value))
    return out


def reference_markdown(fields: Sequence[Field] = FIELDS) -> str:
    """The configuration reference, generated from FIELDS so the docs cannot drift."""
    rows = ["| setting | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for f in fields:
        default = "" if f.default in (None, "") else f"`{f.default}`"
        choices = f" ({' / '.join(f.choices)})" if f.choices else ""
        rows.append(f"| `{f.name}` | `{f.flag}` | `{f.env}` | {default} | {f.help}{choices} |")
    return "\n".join(rows) + "\n"


def replace(s: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(s, **changes)
