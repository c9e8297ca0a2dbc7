"""Real PostgreSQL 16 servers for the tests, from the binaries PyPI's `pgserver` bundles (the `test` extra).

`PgServer` runs one `postgres` on a free loopback port with its own data directory, as an
unprivileged user when the suite runs as root (PostgreSQL refuses root; `nobody` exists on every
Debian system, so nothing is added to the machine). It can be stopped, killed, restarted on the
same port, and cloned into a streaming-replication standby that can be promoted.

No stub anywhere: the keystore talks to the real server over TCP on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg


def _bundled_bin() -> Path:
    """The wheel's postgres, initdb, pg_ctl, pg_basebackup ... (found, not imported: importing
    pgserver warns about XDG_RUNTIME_DIR, and the suite turns warnings into errors)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver is not installed (it comes with the `test` extra: scripts/test installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall"


def _run_as() -> pwd.struct_passwd | None:
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else None


def _install_dir() -> Path:
    """Where the binaries can run from: as root, a copy outside /root (mode 0700) that `nobody` can
    read, laid out as in site-packages (the binaries find libpq at $ORIGIN/../../../pgserver.libs)."""
    src = _bundled_bin()
    if _run_as() is None:
        return src
    top = Path(tempfile.gettempdir()) / f"s3proxy-pginstall-{os.stat(src / 'bin' / 'postgres').st_size}"
    if not (top / "pgserver" / "pginstall" / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="s3proxy-pginstall-"))
        for part in ("bin", "lib", "share"):
            shutil.copytree(src / part, staging / "pgserver" / "pginstall" / part, symlinks=True)
        shutil.copytree(src.parent.parent / "pgserver.libs", staging / "pgserver.libs", symlinks=True)
        for d in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            d.chmod(0o755)
        try:
            staging.rename(top)
        except OSError:  # another session copied it first
            shutil.rmtree(staging, ignore_errors=True)
    return top / "pgserver" / "pginstall"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, base: Path | None = None, *, port: int | None = None, init: bool = True) -> None:
        self.install = _install_dir()
        self.user = _run_as()
        self.base = Path(base or tempfile.mkdtemp(prefix="s3proxy-pg-"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        if init:
            self._own(self.data, mkdir=True)
            self._tool("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
            self._configure()

    # running the binaries ------------------------------------------------------------------------
    def _own(self, path: Path, *, mkdir: bool = False) -> None:
        if mkdir:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "LD_LIBRARY_PATH": str(self.install / "lib"), "PGUSER": "postgres"}

    def _tool(self, name: str, *args: str) -> str:
        kw = {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user is not None else {}
        done = subprocess.run([str(self.install / "bin" / name), *args], cwd=self.base, env=self._env(),
                              capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]
        if done.returncode:
            raise RuntimeError(f"{name} failed: {done.stderr.strip()[-2000:]}")
        return str(done.stdout)

    def _configure(self) -> None:
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nwal_level = replica\n"
                "max_wal_senders = 5\nhot_standby = on\nshared_buffers = 32MB\nmax_connections = 60\n"
                "wal_keep_size = 64MB\n"
            )

    # life cycle ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 30.0) -> PgServer:
        log = open(self.base / "postgres.log", "ab")
        kw = {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user is not None else {}
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            [str(self.install / "bin" / "postgres"), "-D", str(self.data), "-p", str(self.port)],
            cwd=self.base, env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kw,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("postgres did not start: " + (self.base / "postgres.log").read_text()[-2000:]) from None
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Shut down: `fast` (clean, what a restart or a failover drill does) or `immediate` (crash-like)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal({"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "smart": signal.SIGTERM}[mode])
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # databases and replication ---------------------------------------------------------------------
    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def standby(self) -> PgServer:
        """A streaming-replication standby of this (running) server, started; `promote()` makes it primary."""
        replica = PgServer(port=free_port(), init=False)
        replica._own(replica.data, mkdir=True)
        replica._tool("pg_basebackup", "-D", str(replica.data), "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", "postgres", "-X", "stream", "-R", "--no-sync", "--checkpoint=fast")
        return replica.start()

    def promote(self) -> None:
        self._tool("pg_ctl", "promote", "-w", "-D", str(self.data))

    def is_primary(self) -> bool:
        with psycopg.connect(self.url, connect_timeout=2) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return row is not None and not row[0]
