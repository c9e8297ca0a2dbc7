"""Composition root: the only place that names concrete classes and wires them from Settings."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import re
import secrets
import socket
import ssl
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from . import banner, ops, private, redact, tls
from .auth.context import AuthContext
from .auth.credentials import Credential, CredentialStore
from .backends.base import Backend
from .http.authorize import S3Authorizer
from .http.guard import Gate, GuardedRunner, Limits
from .http.metrics import OPERATIONAL_PATHS, CountingAuditSink, InstrumentedBackend, Metrics, Readiness, build_operational_app
from .http.server import Frontend, Origin, build_web_app
from .internal import InternalRecords
from .kms.api import HANDLERS as KMS_OPERATIONS
from .kms.api import KmsApi
from .kms.audit import FileAuditSink, audit_log_path
from .kms.caller import Caller
from .kms.datakeys import DataKeySource
from .kms.errors import KmsError, Pkcs11Error, RootKeyError
from .kms.keystore import KeystoreUnavailable
from .kms.service import KeyService
from .kms.wrapping import Sealer, default_root_key
from .modes.kms_modes import BucketKeyCache
from .policy import FULL_ACCESS, IDENTITY_POLICY, PolicyError
from .policy import parse as parse_policy
from .settings import CredentialEntry, Settings, SettingsError, credential_entries
from .store import Buckets, Catalog, ListingCache, MultipartUploads, ObjectStore
from .store.conditions import Enforcement

log = logging.getLogger("s3proxy")

CREDENTIALS_FILE = banner.CREDENTIALS_FILE
LISTEN_BACKLOG = 1024  # the listen queue of each worker's socket (`serve --workers`)
# the metric labels an operation may take (http/metrics.py: a fixed vocabulary, never from a request)
OPERATION_NAMES = (*ops.NAMES, "NotImplemented", *("kms:" + name for name in KMS_OPERATIONS))


class StartupError(Exception):
    """The proxy cannot start; the message says why in words an operator can act on."""


@dataclass(frozen=True)
class Bootstrap:
    credentials: CredentialStore
    generated: Credential | None  # a pair created on this first start, to show the operator once
    secret_keys: tuple[str, ...] = field(default=(), repr=False)  # for the log redaction
    first_access_key: str | None = None  # what the start announces as the pair to use


_USER_NAME = re.compile(r"^[\w+=,.@-]{1,64}$", re.ASCII)  # IAM's rule for user names


def derived_account(access_key: str) -> str:
    """The account of a [[credentials]] entry that names none: 12 digits from SHA-256 of its access key, so the
    same entry always lands in the same account, and entries without `account` never share one."""
    digest = hashlib.sha256(b"s3proxy-account:" + access_key.encode()).hexdigest()
    return f"{int(digest, 16) % 10**12:012d}"


def _credential(entry: CredentialEntry, account: str) -> Credential:
    """One configured credential with its identity policy parsed; StartupError with the reason otherwise."""
    label = f"[[credentials]] access key {entry.access_key} (user {entry.user_name!r})"
    if not _USER_NAME.match(entry.user_name):
        raise StartupError(f"{label}: a user name is 1-64 letters, digits and +=,.@_- (IAM's rule)")
    policy = FULL_ACCESS
    if entry.policy is not None:
        try:
            policy = parse_policy(entry.policy, IDENTITY_POLICY)
        except PolicyError as exc:
            raise StartupError(f"{label}: identity policy ({entry.policy_source}): {exc}") from None
    return Credential(entry.access_key, entry.secret_key, entry.user_name, account, policy)


Source = tuple[CredentialEntry, str, bool]  # an entry, its account, whether that account was derived


def _check_accounts(sources: list[Source], default_account: str) -> None:
    """One user name is one user: two access keys of one user must carry the same policy; and no derived
    account may be one that is named explicitly."""
    explicit = {default_account} | {account for _, account, derived in sources if not derived}
    policies: dict[tuple[str, str], str | None] = {}
    for entry, account, derived in sources:
        if derived and account in explicit:
            raise StartupError(
                f"[[credentials]] access key {entry.access_key}: its derived account {account} is also named "
                "explicitly; give this entry an account of its own"
            )
        user = (account, entry.user_name)
        if user in policies and policies[user] != entry.policy:
            raise StartupError(f"user {entry.user_name!r} of account {account} has two access keys with different "
                               "policies: give them the same one")
        policies[user] = entry.policy


def load_credentials(settings: Settings) -> Bootstrap:
    """Client credentials from settings, else from DATA_DIR/credentials.toml, else a new pair (0600).

    The access_key/secret_key pair, the generated pair and DATA_DIR/credentials.toml's entries belong to
    `account_id` (the single-user setup, as before accounts existed); a [[credentials]] entry of the
    config file belongs to the account it names, or else to an account of its own (`derived_account`)."""
    sources: list[Source] = [(e, e.account or derived_account(e.access_key), e.account is None)
                             for e in settings.credentials]
    if settings.access_key and settings.secret_key:
        pair = CredentialEntry(settings.access_key, settings.secret_key, settings.access_key)
        sources.insert(0, (pair, settings.account_id, False))
    path = settings.data_dir / CREDENTIALS_FILE
    if not sources and path.exists():
        try:
            stored = credential_entries(tomllib.loads(path.read_text(encoding="utf-8"))["credentials"], path)
        except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
            raise StartupError(f"cannot read {path}: {exc.__class__.__name__}") from None
        except SettingsError as exc:
            raise StartupError(str(exc)) from None
        sources = [(e, e.account or settings.account_id, False) for e in stored]
    if sources:
        _check_accounts(sources, settings.account_id)
        credentials = [_credential(e, account) for e, account, _ in sources]
        return Bootstrap(CredentialStore(credentials), None, tuple(c.secret_key for c in credentials),
                         credentials[0].access_key)
    generated = Credential("S3P" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30), "admin", settings.account_id)
    fd = private.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(
            "# s3proxy client credentials, generated on first start\n"
            f'[[credentials]]\naccess_key = "{generated.access_key}"\nsecret_key = "{generated.secret_key}"\nuser = "admin"\n'
        )
    return Bootstrap(CredentialStore([generated]), generated, (generated.secret_key,), generated.access_key)


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


def root_sealer(settings: Settings) -> Sealer | None:
    """The sealer over a root key inside a PKCS#11 token (`root_key = pkcs11:...`; python-pkcs11 is
    loaded only then); None for the root key file, which the KMS opens itself."""
    if not settings.root_key:
        return None
    from .kms.pkcs11 import root_aead

    return Sealer.over([root_aead(settings.root_key, str(settings.pkcs11_module or "") or None, settings.pkcs11_pin)])


def open_kms(settings: Settings, clock: Callable[[], float], metrics: Metrics, worker: int | None = None) -> KeyService:
    audit = None
    try:
        sealer = root_sealer(settings)
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
            sealer=sealer,
            pkcs11_module=str(settings.pkcs11_module) if settings.pkcs11_module else None,
        )
    except (RootKeyError, Pkcs11Error, OSError, RuntimeError, KeystoreUnavailable, KmsError) as exc:
        if audit is not None:
            audit.close()
        raise StartupError(f"KMS keystore: {exc}") from None


def data_keys(settings: Settings, internal: KeyService) -> DataKeySource:
    """Where SSE-KMS gets its keys: the internal key service, or the external KMS at kms_url."""
    if not settings.kms_url:
        return internal
    from .modes.external_kms import ExternalKms

    return ExternalKms(settings.kms_url, region=settings.kms_region or settings.region,
                       access_key=settings.kms_access_key or "", secret_key=settings.kms_secret_key or "", internal=internal)


def prepare_data_dir(settings: Settings) -> None:
    """The data dir, created 0700, writable, and private: what an older version (or a looser umask)
    left group- or world-readable is tightened, and the log says so once. The root key file is left
    as it is: KMS refuses a loose one, since someone else may have read it already."""
    try:
        private.make_dir(settings.data_dir)
        changed, failed = private.tighten(settings.data_dir, skip=(settings.root_key_path,))
        probe = settings.data_dir / ".write-probe"
        private.write_file(probe, b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"data_dir {settings.data_dir}: {exc.strerror or exc}") from None
    if changed:
        log.warning(
            "made %d files and directories under %s private (directories 0700, files 0600); they were readable "
            "by other users (made by an older version or under a looser umask), e.g. %s",
            len(changed), settings.data_dir, ", ".join(str(p) for p in changed[:5]),
        )
    if failed:
        log.warning("could not make %d paths under %s private (owned by another user?), e.g. %s",
                    len(failed), settings.data_dir, ", ".join(str(p) for p in failed[:5]))
    beside = default_root_key(settings.data_dir)
    if settings.root_key_file is None and not settings.root_key and settings.legacy_root_key.exists() and beside.exists():
        raise StartupError(f"two root keys: {settings.legacy_root_key} (inside the data dir, where older versions made it) "
                           f"and {beside}; keep the one that opens the keystore and remove the other, or name it in "
                           "root_key_file")


def prepare_tls(settings: Settings) -> tls.TlsFiles | None:
    """The certificate and key to serve HTTPS with (for tls=self-signed made now, or reused), or None."""
    try:
        return tls.prepare(settings)
    except tls.TlsError as exc:
        raise StartupError(str(exc)) from None


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
        redact.install_log_redaction([settings.backend_secret_key or "", settings.kms_secret_key or "",
                                      settings.pkcs11_pin or ""])
        prepare_data_dir(settings)
        self.tls = prepare_tls(settings)
        self.bootstrap = load_credentials(settings)
        redact.install_log_redaction(self.bootstrap.secret_keys)
        self.metrics = metrics or Metrics(OPERATION_NAMES)
        self.readiness = Readiness(self.ready, settings.ready_interval)
        self.backend = InstrumentedBackend(make_backend(settings, self.metrics), self.metrics)
        self.kms = open_kms(settings, clock, self.metrics, worker)
        # the integrity key (kms/integrity.py) authenticates what the store keeps beside the data
        integrity = self.kms.integrity()
        keys = integrity.keys()
        records = InternalRecords(self.backend, settings.internal_bucket, ik_records=keys.records, anchors=integrity,
                                  read_v1=settings.read_format_v1)
        catalog = Catalog(records, keys, read_v1=settings.read_format_v1)
        buckets = Buckets(self.backend, records, default_account=settings.account_id)
        listing = ListingCache(max_bytes=settings.listing_cache_bytes)
        enforcement = Enforcement(self.backend, records.bucket, records.ensure_bucket)
        self.store = ObjectStore(self.backend, catalog, buckets, enforcement, kms=self.kms, clock=clock, listing=listing)
        self.data_keys = data_keys(settings, self.kms)
        bucket_keys = BucketKeyCache()
        # a changed key's bucket keys are dropped at once, whether it changed here or on another proxy or
        # worker sharing the keystore (its change feed reaches this process within a second)
        self.kms.subscribe(bucket_keys.forget_key)
        uploads = MultipartUploads(self.backend, catalog, buckets, self.store.conditions, clock=clock, listing=listing)
        services = ops.Services(
            store=self.store,
            uploads=uploads,
            buckets=buckets,
            kms=self.data_keys,
            region=settings.region,
            account_id=settings.account_id,
            clock=clock,
            internal_bucket=settings.internal_bucket,
            ssec_over_http=settings.ssec_over_http,
            bucket_keys=bucket_keys,
        )

        def caller_for(auth: AuthContext, origin: Origin, request_id: str, via_service: str | None) -> Caller:
            """The requester as the KMS judges and audits them (via_service: S3 calling on their behalf)."""
            credential = auth.credential
            return Caller(
                access_key=credential.access_key, user_name=credential.user_name, account_id=credential.account,
                source_ip=origin.remote, user_agent=origin.user_agent, request_id=request_id, via_service=via_service,
                secure=origin.secure, region=auth.region or settings.region, identity=credential.policy,
            )

        self.frontend = Frontend(
            ops.table(services),
            self.bootstrap.credentials,
            region=settings.region,
            caller_of=caller_for,
            authorizer=S3Authorizer(
                buckets.access, internal_bucket=settings.internal_bucket, store=self.store, uploads=uploads, clock=clock
            ),
            kms_api=KmsApi(self.kms),
            clock=clock,
            metrics=self.metrics,
            ready=self.readiness,
            virtual_host_domains=settings.host_domains,
            sigv2=settings.sigv2,
            # with a separate operational listener, /metrics is served there only
            operational_paths=(
                tuple(p for p in OPERATIONAL_PATHS if p != "/metrics") if settings.metrics_address else OPERATIONAL_PATHS
            ),
        )
        self.limits = Limits(header_bytes=settings.max_header_bytes, header_timeout=settings.header_timeout,
                             idle_timeout=settings.idle_timeout, max_connections=settings.max_connections)
        self.runner: web.AppRunner | None = None
        self.metrics_runner: web.AppRunner | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None

    async def ready(self) -> dict[str, str]:
        """What keeps this proxy from serving, by component (empty when ready). Run by
        self.readiness on a timer; /readyz answers its last result."""
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
        scheme = "https" if self.settings.https else "http"
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        await self.backend.start()
        batch_on = getattr(self.kms.audit, "batch_on", None)
        if batch_on is not None:  # audit lines of the KMS calls run off the loop: one write per loop turn
            batch_on(asyncio.get_running_loop())
        # auto_decompress off: Content-Encoding of a PUT is an attribute of the object, not of the transfer
        gate = Gate(self.limits, on_refuse=lambda reason: self.metrics.refused.labels(reason).inc())
        self.metrics.connections.set_function(lambda: gate.open)
        # shutdown_timeout: what stop() leaves after its own drain is cut off within it
        self.runner = GuardedRunner(build_web_app(self.frontend), gate, access_log=None, shutdown_timeout=1,
                                    auto_decompress=False)
        self.port = await self._listen(self.runner, self.settings.host, self.settings.port, self._ssl_context(), self._sock)
        address = self.settings.metrics_address
        if address is not None:
            self.metrics_runner = GuardedRunner(build_operational_app(self.metrics, self.readiness), Gate(self.limits),
                                                access_log=None, shutdown_timeout=5)
            self.metrics_port = await self._listen(self.metrics_runner, *address, None)
        self.readiness.start()

    async def _listen(self, runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext | None,
                      sock: socket.socket | None = None) -> int:
        """Serve `runner` on host:port, or on `sock` (a worker's own socket on the shared port); the port
        bound (port 0 picks one)."""
        await runner.setup()
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock, ssl_context=ssl_context, backlog=LISTEN_BACKLOG)
        else:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"port {port} on {host} is already in use") from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        server = site._server  # the bound socket tells the real port when port 0 was asked
        return server.sockets[0].getsockname()[1] if isinstance(server, asyncio.Server) and server.sockets else port

    @property
    def metrics_url(self) -> str | None:
        address = self.settings.metrics_address
        if address is None or self.metrics_port is None:
            return None
        host = address[0] if ":" not in address[0] else f"[{address[0]}]"
        return f"http://{host}:{self.metrics_port}"

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        try:
            return tls.server_context(self.tls)
        except tls.TlsError as exc:
            raise StartupError(str(exc)) from None

    def inflight(self) -> int:
        """Requests being served right now (by this process)."""
        return int(self.metrics.registry.get_sample_value("s3proxy_inflight_requests") or 0)

    async def stop(self) -> int:
        """Stop taking connections, let the requests in flight finish for up to shutdown_grace seconds
        (/readyz answers 503 meanwhile), cut off what is left, and close; the number of requests cut off."""
        await self.readiness.stop()
        self.readiness.problems = {"proxy": "stopping"}
        cut_off = 0
        if self.runner is not None:
            # the drain is ours: aiohttp's own (cleanup's shutdown_timeout) stops reading from every
            # connection first, so an upload whose body is still arriving could never finish
            deadline = time.monotonic() + self.settings.shutdown_grace
            for site in list(self.runner.sites):
                await site.stop()
            while self.inflight() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            cut_off = self.inflight()
            await self.runner.cleanup()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
        self.runner = self.metrics_runner = None
        await self.backend.close()
        if self.data_keys is not self.kms:
            await asyncio.to_thread(self.data_keys.close)
        self.kms.close()
        return cut_off


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
    redact.install_log_redaction(handlers=logging.getLogger().handlers)  # also what other libraries log
    tune_malloc()

    async def main() -> None:
        proxy = Proxy(settings)
        await proxy.start()
        lines = banner.started(settings, proxy.url, generated=proxy.bootstrap.generated, tls=proxy.tls,
                               metrics_url=proxy.metrics_url, access_key=proxy.bootstrap.first_access_key)
        await serve_until_signalled(proxy, announce, lines)

    asyncio.run(main())


async def serve_until_signalled(proxy: Proxy, announce: Callable[[str], None] | None = None,
                                opening: Sequence[str] = ()) -> int:
    """Serve until SIGINT or SIGTERM, then stop the proxy, draining what is in flight for up to
    shutdown_grace seconds, and say so (`announce`, else the log); the number of requests cut off.
    `opening`: lines announced once the signals are handled (so whoever reads them may stop it)."""
    import signal

    say = announce or (lambda line: log.info("%s", line))
    received: list[int] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        received.append(number)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    grace = proxy.settings.shutdown_grace
    for line in opening:
        say(line)
    try:
        await stop.wait()
    except BaseException:
        await proxy.stop()
        raise
    say(banner.stopping(signal.Signals(received[0]).name, proxy.inflight(), grace))
    began = time.monotonic()
    cut_off = await proxy.stop()
    say(banner.stopped(time.monotonic() - began, grace, cut_off))
    return cut_off


class ProxyThread:
    """A proxy serving from a background thread with its own event loop (tests, examples, benchmarks)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.proxy: Proxy | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="s3proxy", daemon=True)

    def start(self) -> ProxyThread:
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
