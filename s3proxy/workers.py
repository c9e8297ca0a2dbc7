"""`s3proxy serve --workers N`: N processes serving one port (SO_REUSEPORT), supervised.

The supervisor (the process started) does once what must happen once: the data dir, generated
client credentials, the root key, the keystore's tables and the service key. Then it reserves the
port (a bound socket that never listens, so port 0 is resolved once) and forks N workers. Each
worker is a whole proxy (its own event loop, KMS cache and keystore watcher, its own audit chain
DATA_DIR/kms/audit.wN.log) listening on its own SO_REUSEPORT socket on that port; the kernel
spreads new connections over the workers by a hash of the client's address and port. (One
shared listening socket was tried first: an idle event loop accepts a whole burst of connections
at once, so one worker took nearly all of them.) Workers share state only through the
keystore (SQLite's file locks, or PostgreSQL) and the backend, so a change made through one worker
reaches the others as it reaches other proxies (docs/SCALING.md).

Signals to the supervisor:
- SIGTERM, SIGINT: each worker stops accepting, finishes what is in flight (up to `shutdown_grace`
  seconds; then it cuts off what is left, logs how many, and exits with EXIT_CUT_OFF) and exits;
  then the supervisor says how it ended and exits 0.
- SIGHUP: reload. Settings are read again (file and environment) and workers are restarted one at
  a time (stopped gracefully, then started with the new settings and the same audit chain) while
  the others serve; a changed `workers` adds or stops workers. Connections the kernel had queued
  on a stopping worker's socket but it had not accepted yet are reset when it closes, unless the
  kernel migrates them to the other workers (sysctl net.ipv4.tcp_migrate_req=1, which the compose
  file sets); the window is the instant between its last accept and its close. host and port stay
  those reserved at start.
A worker that dies unexpectedly is started again (after 1 s, longer if it keeps dying); a worker
that cannot start at first (StartupError) stops the server with its message. Workers ask the kernel
for SIGTERM if the supervisor dies, so none is left behind.

Metrics: prometheus_client's multiprocess mode. Each worker writes its counters to files in a
directory private to this run; `/metrics` on any worker sums every worker's counters and histograms
and shows the in-flight gauge per worker (label `pid`).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from .settings import Settings

log = logging.getLogger("s3proxy.workers")

READY = b"R"
EXIT_CUT_OFF = 4  # a worker that had to cut off requests still running after the grace period
_PR_SET_PDEATHSIG = 1


@dataclass
class Worker:
    index: int
    pid: int
    ready_fd: int  # the supervisor's end of the pipe the worker writes READY to
    started: float


def enable_shared_metrics(directory: str) -> None:
    """Counters of every metric constructed from now on go to files in `directory` (multiprocess mode)."""
    from prometheus_client import values

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.get_value_class()


def shared_metrics() -> object:
    """A Metrics whose `render` sums the metric files of every worker."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    from .app import OPERATION_NAMES
    from .http.metrics import Metrics

    class SharedMetrics(Metrics):
        def render(self) -> bytes:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return bytes(generate_latest(registry))

    return SharedMetrics(OPERATION_NAMES)


def bind(host: str, port: int, *, listen: bool) -> socket.socket:
    """A SO_REUSEPORT socket on host:port; listening (a worker's) or only bound (the supervisor's reservation)."""
    from .app import LISTEN_BACKLOG

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def prepare_once(settings: Settings) -> tuple[object, object]:
    """What the workers must not race for: data dir, TLS files, credentials, root key, keystore tables,
    service key; (the credentials bootstrap, the TLS files)."""
    from .app import StartupError, load_credentials, prepare_data_dir, prepare_tls
    from .kms.audit import MemoryAuditSink
    from .kms.errors import RootKeyError
    from .kms.keystore import KeystoreUnavailable
    from .kms.service import KeyService

    prepare_data_dir(settings)
    tls_files = prepare_tls(settings)
    bootstrap = load_credentials(settings)
    try:
        service = KeyService.open(settings.data_dir, settings.root_key_path, region=settings.region,
                                  account_id=settings.account_id, audit=MemoryAuditSink(),
                                  keystore_url=settings.keystore_url)
    except (RootKeyError, OSError, RuntimeError, KeystoreUnavailable) as exc:
        raise StartupError(f"KMS keystore: {exc}") from None
    try:
        service.service_key()
    finally:
        service.close()
    return bootstrap, tls_files


def _die_with_parent() -> None:
    name = ctypes.util.find_library("c")
    try:
        if name:
            ctypes.CDLL(name).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _worker(settings: Settings, index: int, port: int, ready_fd: int) -> int:
    """The body of worker `index` (in the forked child): serve on `port` until SIGTERM/SIGINT."""
    from .app import Proxy, StartupError, serve_until_signalled

    _die_with_parent()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def main() -> int:
        sock = bind(settings.host, port, listen=True)
        proxy = Proxy(settings, worker=index, metrics=shared_metrics(), sock=sock)  # type: ignore[arg-type]
        await proxy.start()
        os.write(ready_fd, READY)
        os.close(ready_fd)
        return await serve_until_signalled(proxy, lambda line: log.info("worker %d: %s", index, line))

    try:
        return EXIT_CUT_OFF if asyncio.run(main()) else 0
    except StartupError as exc:
        print(f"s3proxy worker {index}: cannot start: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 0


class Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket, reload: Callable[[], Settings] | None) -> None:
        self.settings = settings
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self.reload_settings = reload
        self.workers: dict[int, Worker] = {}
        self.signals: list[int] = []
        self.failures: dict[int, int] = {}
        self.pending: dict[int, float] = {}  # worker index -> when to start it again

    def spawn(self, index: int) -> Worker:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                os.close(read_fd)
                for other in self.workers.values():
                    if other.ready_fd >= 0:
                        os.close(other.ready_fd)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                self.sock.close()  # the reservation stays with the supervisor
                code = _worker(self.settings, index, self.port, write_fd)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        worker = Worker(index, pid, read_fd, time.monotonic())
        self.workers[index] = worker
        return worker

    @staticmethod
    def wait_ready(worker: Worker, timeout: float = 60.0) -> bool:
        """True once the worker's listener is up; False if it exited or took longer than `timeout`."""
        import select

        ready, _, _ = select.select([worker.ready_fd], [], [], timeout)
        ok = bool(ready) and os.read(worker.ready_fd, 1) == READY
        os.close(worker.ready_fd)
        worker.ready_fd = -1
        return ok

    def stop(self, worker: Worker) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited 15 s after its grace period; its exit code (None: gone)."""
        try:
            os.kill(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            return None
        deadline = time.monotonic() + self.settings.shutdown_grace + 15
        while time.monotonic() < deadline:
            pid, status = os.waitpid(worker.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        return os.waitstatus_to_exitcode(os.waitpid(worker.pid, 0)[1])

    def reload(self) -> None:
        if self.reload_settings is not None:
            try:
                fresh = self.reload_settings()
            except Exception as exc:  # a bad edit keeps the running workers
                log.error("reload: settings not applied: %s", exc)
                return
            if (fresh.host, fresh.port) != (self.settings.host, self.settings.port):
                log.warning("reload: host and port stay %s:%s (restart to change them)",
                            self.settings.host, self.settings.port)
            self.settings = fresh
        for index in sorted(self.workers):
            # one at a time, so the others serve meanwhile; stop first: the new one takes over the
            # worker's audit chain, which only one process may hold
            self.stop(self.workers.pop(index))
            if index > self.settings.workers:
                continue  # fewer workers now
            if not self.wait_ready(self.spawn(index)):
                log.error("reload: worker %d did not start again (see its message); the others keep serving", index)
        for index in range(1, self.settings.workers + 1):  # more workers now
            if index not in self.workers and not self.wait_ready(self.spawn(index)):
                log.error("reload: worker %d did not start (see its message)", index)
        log.info("reloaded: %d workers", len(self.workers))

    def run(self, ready: Callable[[], None] = lambda: None, announce: Callable[[str], None] = print) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda number, _frame: self.signals.append(number))
        for index in range(1, self.settings.workers + 1):
            worker = self.spawn(index)
            if not self.wait_ready(worker):
                self.shutdown()
                return 1
        ready()
        while True:
            while self.signals:
                number = self.signals.pop(0)
                if number == signal.SIGHUP:
                    self.reload()
                else:
                    from . import banner

                    grace = self.settings.shutdown_grace
                    announce(banner.stopping(signal.Signals(number).name, 0, grace, workers=len(self.workers)))
                    began = time.monotonic()
                    cut = self.shutdown()
                    announce(banner.stopped(time.monotonic() - began, grace, 0) if not cut else
                             f"s3proxy stopped after {time.monotonic() - began:.1f} s: {cut} worker(s) cut off requests "
                             f"still running after {grace:g} s (their log lines say how many)")
                    sys.stdout.flush()
                    return 0
            self.reap()
            time.sleep(0.05)

    def reap(self) -> None:
        """Start again a worker that died (1 s later, doubling up to 30 s while it keeps dying)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            dead = next((w for w in self.workers.values() if w.pid == pid), None)
            if dead is None:
                continue
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)
            del self.workers[dead.index]
            quick = time.monotonic() - dead.started < 10
            self.failures[dead.index] = self.failures.get(dead.index, 0) + 1 if quick else 0
            delay = min(30.0, 2.0 ** self.failures[dead.index])
            log.error("worker %d (pid %d) exited with status %d; starting it again in %.0f s",
                      dead.index, pid, os.waitstatus_to_exitcode(status), delay)
            self.pending[dead.index] = time.monotonic() + delay
        for index, when in list(self.pending.items()):
            if when <= time.monotonic():
                del self.pending[index]
                if not self.wait_ready(self.spawn(index)):
                    log.error("worker %d did not start again", index)

    def shutdown(self) -> int:
        """Stop every worker (all at once, each draining); how many had to cut off requests."""
        for worker in list(self.workers.values()):
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        codes = [self.stop(worker) for worker in list(self.workers.values())]
        self.workers.clear()
        return sum(code == EXIT_CUT_OFF for code in codes)


def serve_workers(settings: Settings, *, reload: Callable[[], Settings] | None = None,
                  announce: Callable[[str], None] = print) -> int:
    """Run `settings.workers` worker processes until SIGTERM/SIGINT; the exit code."""
    from . import banner
    from .app import StartupError, tune_malloc

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(process)d %(message)s")
    tune_malloc()
    metrics_dir = tempfile.mkdtemp(prefix="s3proxy-metrics-")
    enable_shared_metrics(metrics_dir)
    try:
        bootstrap, tls_files = prepare_once(settings)
        try:
            sock = bind(settings.host, settings.port, listen=False)
        except OSError as exc:
            raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
        scheme = "https" if settings.https else "http"
        host = settings.host if ":" not in settings.host else f"[{settings.host}]"
        url = f"{scheme}://{host}:{sock.getsockname()[1]}"
        generated = getattr(bootstrap, "generated", None)

        def ready() -> None:  # every worker listens: as the single process, announce then
            for line in banner.started(settings, url, generated=generated, tls=tls_files,  # type: ignore[arg-type]
                                       workers=settings.workers, access_key=getattr(bootstrap, "first_access_key", None)):
                announce(line)
            sys.stdout.flush()

        try:
            return Supervisor(settings, sock, reload).run(ready, announce)
        finally:
            sock.close()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
