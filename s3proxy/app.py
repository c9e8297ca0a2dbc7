"""Composition root: the only place that names concrete classes and wires them from Settings."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import socket
import ssl
import stat
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aiohttp import web

from . import ops
from .auth.credentials import Credential, CredentialStore
from .backends.base import Backend
from .http.metrics import CountingAuditSink, InstrumentedBackend, Metrics
from .http.server import Frontend, build_web_app
from .kms.audit import FileAuditSink, audit_log_path
from .settings import Settings, SettingsError
from .internal import InternalRecords
from .kms.api import KmsApi
from .kms.caller import Caller
from .kms.errors import RootKeyError
from .kms.keystore import KeystoreUnavailable
from .kms.service import KeyService
from .modes.kms_modes import BucketKeyCache
from .store import ObjectStore

log = logging.getLogger("s3proxy")

CREDENTIALS_FILE = "credentials.toml"
LISTEN_BACKLOG = 1024  # the listen queue of each worker's socket (`serve --workers`)


class StartupError(Exception):
    """The proxy cannot start; the message says why in words an operator can act on."""


@dataclass(frozen=True)
class Bootstrap:
    credentials: CredentialStore
    generated: Credential | None  # a pair created on this first start, to show the operator once


def load_credentials(settings: Settings) -> Bootstrap:
    """Client credentials from settings, else from DATA_DIR/credentials.toml, else a new pair (0600)."""
    entries = [Credential(c.access_key, c.secret_key, c.user_name) for c in settings.credentials]
    if settings.access_key and settings.secret_key:
        entries.insert(0, Credential(settings.access_key, settings.secret_key, settings.access_key))
    if entries:
        return Bootstrap(CredentialStore(entries), None)
    path = settings.data_dir / CREDENTIALS_FILE
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            stored = [Credential(str(c["access_key"]), str(c["secret_key"]), str(c.get("user", "admin"))) for c in data["credentials"]]
        except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
            raise StartupError(f"cannot read {path}: {exc.__class__.__name__}") from None
        return Bootstrap(CredentialStore(stored), None)
    generated = Credential("S3P" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30), "admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(
            "# s3proxy client credentials, generated on first start\n"
            f'[[credentials]]\naccess_key = "{generated.access_key}"\nsecret_key = "{generated.secret_key}"\nuser = "admin"\n'
        )
    return Bootstrap(CredentialStore([generated]), generated)


def make_backend(settings: Settings, metrics: Metrics | None = None) -> Backend:
    if settings.backend == "s3":
        from .backends.s3 import S3Backend

        return S3Backend(
            settings.backend_url or "",
            region=settings.backend_region,
            access_key=settings.backend_access_key or "",
            secret_key=settings.backend_secret_key or "",
            addressing=settings.backend_addressing,
            timeout=settings.backend_timeout,
            on_retry=(lambda method, reason: metrics.backend_retries.labels(method, reason).inc()) if metrics else None,
        )
    from .backends.fs import FsBackend

    return FsBackend(settings.data_dir / "objects")


def open_kms(settings: Settings, clock: Callable[[], float], metrics: Metrics, worker: int | None = None) -> KeyService:
    audit = None
    try:
        audit = CountingAuditSink(FileAuditSink(audit_log_path(settings.data_dir, worker)), metrics)
        return KeyService.open(
            settings.data_dir,
            settings.root_key_path,
            region=settings.region,
            account_id=settings.account_id,
            administrators=settings.admin_users,
            clock=clock,
            audit=audit,
            keystore_url=settings.keystore_url,
        )
    except (RootKeyError, OSError, RuntimeError, KeystoreUnavailable) as exc:
        if audit is not None:
            audit.close()
        raise StartupError(f"KMS keystore: {exc}") from None


def prepare_data_dir(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"data_dir {settings.data_dir}: {exc.strerror or exc}") from None


class Proxy:
    """A configured s3proxy that can be started and stopped inside an event loop."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 worker: int | None = None, metrics: Metrics | None = None, sock: socket.socket | None = None) -> None:
        """`worker`, `metrics`, `sock`: set by `serve --workers N` (s3proxy/workers.py) for worker N,
        its metrics shared across workers, and its own listening socket on the shared port."""
        self.settings = settings
        self.clock = clock
        self.worker = worker
        self._sock = sock
        prepare_data_dir(settings)
        self.bootstrap = load_credentials(settings)
        self.metrics = metrics or Metrics()
        self.backend = InstrumentedBackend(make_backend(settings, self.metrics), self.metrics)
        self.kms = open_kms(settings, clock, self.metrics, worker)
        self.store = ObjectStore(self.backend, InternalRecords(self.backend, settings.internal_bucket), clock=clock)
        bucket_keys = BucketKeyCache()
        # any key change, here or on another proxy sharing the keystore, drops the cached bucket keys
        # (key changes are rare admin events; the next request per bucket asks the KMS again)
        self.kms.on_change(lambda key_id: bucket_keys.clear())
        services = ops.Services(
            store=self.store,
            backend=self.backend,
            kms=self.kms,
            region=settings.region,
            account_id=settings.account_id,
            clock=clock,
            internal_bucket=settings.internal_bucket,
            ssec_over_http=settings.ssec_over_http,
            bucket_keys=bucket_keys,
        )
        self.frontend = Frontend(
            ops.table(services),
            self.bootstrap.credentials,
            region=settings.region,
            kms_api=KmsApi(self.kms),
            kms_caller=lambda auth, request, request_id: Caller(
                access_key=auth.credential.access_key,
                user_name=auth.credential.user_name,
                account_id=settings.account_id,
                source_ip=request.remote,
                user_agent=request.headers.get("user-agent"),
                request_id=request_id,
            ),
            clock=clock,
            metrics=self.metrics,
            ready=self.ready,
            virtual_host_domains=settings.host_domains,
            sigv2=settings.sigv2,
        )
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    async def ready(self) -> dict[str, str]:
        """What keeps this proxy from serving, by component (empty when ready)."""
        problems: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.backend.list_buckets(), 5)
        except Exception as exc:  # any failure means not ready; the message names it
            problems["backend"] = getattr(exc, "code", type(exc).__name__)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.kms.service_key), 5)
        except Exception as exc:
            problems["keystore"] = getattr(exc, "code", type(exc).__name__)
        return problems

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls else "http"
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        await self.backend.start()
        # auto_decompress off: Content-Encoding of a PUT is an attribute of the object, not of the transfer
        self.runner = web.AppRunner(build_web_app(self.frontend), access_log=None, shutdown_timeout=5, auto_decompress=False)
        await self.runner.setup()
        site: web.BaseSite
        if self._sock is not None:
            site = web.SockSite(self.runner, self._sock, ssl_context=self._ssl_context(), backlog=LISTEN_BACKLOG)
        else:
            site = web.TCPSite(self.runner, self.settings.host, self.settings.port, ssl_context=self._ssl_context(),
                               reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"port {self.settings.port} on {self.settings.host} is already in use") from None
            raise StartupError(f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror or exc}") from None
        server = site._server  # the bound socket tells the real port when port 0 was asked
        self.port = server.sockets[0].getsockname()[1] if server and server.sockets else self.settings.port

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(self.settings.tls_cert), str(self.settings.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(f"tls_cert/tls_key: {exc}") from None
        return context

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.backend.close()
        self.kms.close()


# glibc mallopt parameters (malloc.h) and the values serve() sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
MALLOC_TUNING = ((_M_ARENA_MAX, 2), (_M_MMAP_THRESHOLD, 4 << 20), (_M_TRIM_THRESHOLD, 16 << 20))


def tune_malloc() -> bool:
    """Set glibc's malloc for a server moving 1 MiB buffers (what MALLOC_ARENA_MAX=2,
    MALLOC_MMAP_THRESHOLD_=4194304 and MALLOC_TRIM_THRESHOLD_=16777216 do), before any worker thread
    starts; False where the C library is not glibc. Measured with benchmarks/bench_modes.py:
    - arenas: blocking calls run in worker threads, and glibc gives threads arenas of their own
      (up to 8 per core), each keeping what was freed in it. With the fs backend's 1 MiB file
      pieces that held peak RSS 10-14 MiB higher after the first 1 GiB transfer.
    - thresholds: by default a freed 1 MiB buffer at the top of the heap is given back to the
      kernel and the next one faults its pages in again (~250 page faults per MiB moved). A 1 GiB
      SSE-C PUT spent 0.82 system CPU-s/GB in the proxy that way, 0.40 with these settings."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc is not None and all(libc.mallopt(param, value) for param, value in MALLOC_TUNING))
    except (OSError, AttributeError):
        return False


def serve(settings: Settings, *, announce: Callable[[str], None] = print) -> None:
    """Run until SIGINT/SIGTERM."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tune_malloc()

    async def main() -> None:
        proxy = Proxy(settings)
        await proxy.start()
        announce(f"s3proxy listening on {proxy.url} (backend {settings.backend}, data {settings.data_dir})")
        generated = proxy.bootstrap.generated
        if generated is not None:
            announce(
                "Generated client credentials (stored in "
                f"{settings.data_dir / CREDENTIALS_FILE}, mode 0600):\n"
                f"  export AWS_ACCESS_KEY_ID={generated.access_key} AWS_SECRET_ACCESS_KEY={generated.secret_key}\n"
                f"  aws --endpoint-url {proxy.url} s3 ls"
            )
        await serve_until_signalled(proxy)

    asyncio.run(main())


async def serve_until_signalled(proxy: Proxy) -> None:
    """Serve until SIGINT or SIGTERM, then stop the proxy (finishing what is in flight)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await proxy.stop()


class ProxyThread:
    """A proxy serving from a background thread with its own event loop (tests, examples, benchmarks)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.proxy: Proxy | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="s3proxy", daemon=True)

    def start(self) -> "ProxyThread":
        self._thread.start()

        async def boot() -> Proxy:
            proxy = Proxy(self.settings)
            await proxy.start()
            return proxy

        self.proxy = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(60)
        return self

    @property
    def url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    def stop(self) -> None:
        if self.proxy is not None:
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


__all__ = ["Proxy", "ProxyThread", "StartupError", "SettingsError", "serve", "load_credentials", "Path"]
