"""What `s3proxy serve` tells the operator on its terminal: at start, where everything is and the
lines a client needs; at shutdown, that it drains and how it ended. One place for the single
process (app.serve) and the supervisor of `serve --workers` (workers.py), so both say the same.

Nothing secret is printed but a client secret generated on this very start (shown once, as before,
so the operator can copy it; afterwards only where it is kept).
"""

from __future__ import annotations

import shlex
import urllib.parse
from pathlib import Path

from .auth.credentials import Credential
from .kms.wrapping import default_root_key
from .settings import Settings
from .tls import TlsFiles

CREDENTIALS_FILE = "credentials.toml"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def client_url(url: str) -> str:
    """`url` as a client on this host dials it: a wildcard listening address becomes the loopback one."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host not in _WILDCARDS:
        return url
    loopback = _WILDCARDS[host]
    netloc = (f"[{loopback}]" if ":" in loopback else loopback) + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _quote(value: object) -> str:
    return shlex.quote(str(value))


def started(settings: Settings, url: str, *, generated: Credential | None, tls: TlsFiles | None,
            metrics_url: str | None = None, workers: int = 1, access_key: str | None = None) -> list[str]:
    """The lines printed once the listener is up; the first names the URL, the second (if any) the metrics.
    `generated`: the pair made on this start (shown once); `access_key`: the first client access key."""
    lines = [f"s3proxy listening on {url} (backend {settings.backend}, data {settings.data_dir}"
             + (f", {workers} workers)" if workers > 1 else ")")]
    if metrics_url:
        lines.append(f"metrics, health and readiness on {metrics_url}/metrics, /healthz, /readyz")
    lines.append(root_key_line(settings))
    if tls is not None and tls.ca is not None:
        lines.append(f"TLS: {'made' if tls.made else 'reusing'} a certificate for {', '.join(tls.names)} signed by a local CA "
                     f"({tls.ca}); clients trust it with AWS_CA_BUNDLE (below), rclone --ca-cert, s3cmd --ca-certs")
    endpoint = client_url(url)
    exports = [f"  export AWS_ENDPOINT_URL={_quote(endpoint)} AWS_DEFAULT_REGION={_quote(settings.region)}"]
    if tls is not None and tls.ca is not None:
        exports.append(f"  export AWS_CA_BUNDLE={_quote(Path(tls.ca).absolute())}")
    if generated is not None:
        lines.append(f"Generated client credentials, stored in {settings.data_dir / CREDENTIALS_FILE} (mode 0600); "
                     "for awscli and boto3, in another terminal:")
        lines.append(f"  export AWS_ACCESS_KEY_ID={generated.access_key} AWS_SECRET_ACCESS_KEY={_quote(generated.secret_key)}")
        lines.extend(exports)
        lines.append("  aws s3 ls && aws kms list-keys")
    else:
        lines.append(f"client credentials: {credentials_source(settings)}; for awscli and boto3:")
        stored = Path(settings.data_dir / CREDENTIALS_FILE).absolute()
        if not settings.access_key and not settings.credentials and access_key:
            # the secret is read from the file by the shell, never printed again
            read = f"awk -F'\"' '/^secret_key/ {{print $2; exit}}' {_quote(stored)}"
            lines.append(f'  export AWS_ACCESS_KEY_ID={access_key} AWS_SECRET_ACCESS_KEY="$({read})"')
        else:
            lines.append("  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...")
        lines.extend(exports)
    lines.append(f"stop with Ctrl-C or SIGTERM: requests in flight get up to {settings.shutdown_grace:g} s to finish")
    return lines


def credentials_source(settings: Settings) -> str:
    """Where the client credentials of this start come from (never the secrets themselves)."""
    places = []
    if settings.access_key:
        places.append(f"the access_key/secret_key settings (access key {settings.access_key})")
    if settings.credentials:
        count = len(settings.credentials)
        places.append(f"{count} [[credentials]] entr{'y' if count == 1 else 'ies'} in {settings.config}")
    return " and ".join(places) or f"{settings.data_dir / CREDENTIALS_FILE} (generated on the first start)"


def root_key_line(settings: Settings) -> str:
    path = settings.root_key_path
    if settings.root_key_file is None and path == settings.legacy_root_key:
        return (f"root key: {path}, inside the data dir where older versions made it, so a copy of the data dir holds "
                f"every key; stop the proxy and move it beside the data dir (mv {_quote(path)} "
                f"{_quote(default_root_key(settings.data_dir))}), or set root_key_file, and back it up apart from the data")
    return f"root key: {path} (back it up apart from the data dir: without it no object can be read)"


def stopping(reason: str, inflight: int, grace: float, *, workers: int = 1) -> str:
    if workers > 1:
        held = f"{workers} workers finish their requests in flight"
    elif inflight:
        held = f"{inflight} request{'' if inflight == 1 else 's'} in flight finish"
    else:
        return f"s3proxy stopping ({reason}): no request in flight"
    return f"s3proxy stopping ({reason}): no new connections; {held} within {grace:g} s, then what is left is cut off"


def stopped(elapsed: float, grace: float, cut_off: int) -> str:
    if cut_off:
        return f"s3proxy stopped after {elapsed:.1f} s: {cut_off} request{'' if cut_off == 1 else 's'} still running after " \
               f"{grace:g} s cut off"
    return f"s3proxy stopped after {elapsed:.1f} s: every request finished"
