"""The shared Keystore: PostgreSQL through psycopg 3 and a small connection pool, for many proxies.

Three tables (created on first use, under an advisory lock so replicas starting together do not
race): `s3proxy_entries` (name, version, blob), `s3proxy_clock` (the one change counter) and
`s3proxy_changes` (name -> counter value of its last write or delete). Compare-and-swap is a
conditional INSERT/UPDATE/DELETE; the same transaction bumps the counter row, whose row lock is held
to commit, so counter order is commit order and no reader can skip a write. It also sends
`NOTIFY s3proxy_keystore`, delivered at commit to every proxy's LISTEN connection: the wake-up of
`wait_for_change`, which falls back to polling the counter every `poll_interval` while the
LISTEN connection is down.

Failures: every call runs on a pooled connection and is retried with backoff (50 ms doubling to
0.5 s) for up to `timeout` seconds on a connection error, each retry on a new connection (a server
restart, or a failover: with a libpq multi-host URL and `target_session_attrs=read-write`, new
connections find the new primary), then raises `KeystoreUnavailable`. The pool is this module's
own: connections are made on demand in the calling thread and a failed one is dropped, so there is
no background reconnection whose backoff could outlast the outage (psycopg_pool's doubles without
bound up to 5 minutes) and no thread to leave behind across `serve --workers`' fork.
A write whose COMMIT was cut off is ambiguous; its retry recognises its own blob (sealed blobs
carry a random nonce, so equal bytes mean the same write).

psycopg is imported here only, so it is needed only when `keystore_url` is a postgresql:// URL
(the `postgres` extra).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import KeystoreConflict
from .base import Entry, KeystoreUnavailable

log = logging.getLogger("s3proxy.keystore")

CHANNEL = "s3proxy_keystore"
_SCHEMA_LOCK = 0x5333_5058  # pg_advisory_xact_lock key for creating the tables
_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS s3proxy_entries '
    '(name TEXT COLLATE "C" PRIMARY KEY, version BIGINT NOT NULL, blob BYTEA NOT NULL)',
    "CREATE TABLE IF NOT EXISTS s3proxy_clock (id INTEGER PRIMARY KEY CHECK (id = 1), counter BIGINT NOT NULL)",
    "INSERT INTO s3proxy_clock (id, counter) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    'CREATE TABLE IF NOT EXISTS s3proxy_changes (name TEXT COLLATE "C" PRIMARY KEY, counter BIGINT NOT NULL)',
    "CREATE INDEX IF NOT EXISTS s3proxy_changes_by_counter ON s3proxy_changes (counter)",
)

T = TypeVar("T")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "keystore_url is a postgresql:// URL but psycopg is not installed: pip install 's3proxy[postgres]'"
        ) from None
    return psycopg


class _Pool:
    """Up to `size` connections: idle ones are reused (last in, first out), a missing one is made
    on demand, one that saw an error or is left inside a transaction is closed, not reused."""

    def __init__(self, connect: Callable[[], Any], size: int) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self, timeout: float) -> Iterator[Any]:
        if not self._slots.acquire(timeout=timeout):
            raise TimeoutError("no keystore connection free")
        conn = None
        try:
            with self._lock:
                if self._closed:
                    raise ConnectionError("the keystore is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._connect()
            yield conn
            reusable = not conn.closed and conn.info.transaction_status == 0  # IDLE: nothing left open
            with self._lock:
                if reusable and not self._closed:
                    self._idle.append(conn)
                    conn = None
        finally:
            if conn is not None:
                conn.close()
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PostgresKeystore:
    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 15.0, poll_interval: float = 0.5,
                 connect_timeout: int = 3) -> None:
        psycopg = _psycopg()
        self._psycopg = psycopg
        self._retryable: tuple[type[BaseException], ...] = (psycopg.OperationalError, TimeoutError, ConnectionError)
        self.timeout = timeout
        self.poll_interval = poll_interval
        params = psycopg.conninfo.conninfo_to_dict(url)  # a malformed URL fails here, before any connection
        self._connect_kwargs: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = connect_timeout
        self._url = url
        self._pool = _Pool(lambda: psycopg.connect(url, autocommit=True, **self._connect_kwargs), pool_size)
        self._listen_lock = threading.Lock()
        self._listener: Any = None
        self._closed = threading.Event()
        try:
            self._run(self._create_schema)
        except BaseException:
            self._pool.close()
            raise

    def __repr__(self) -> str:  # the URL may carry a password
        return "PostgresKeystore(<url hidden>)"

    @staticmethod
    def _create_schema(conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)

    def _run(self, work: Callable[[Any], T], on_retry: Callable[[], None] | None = None) -> T:
        """`work(conn)` on a pooled connection, retried on connection errors until `timeout`."""
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while True:
            try:
                with self._pool.connection(timeout=max(0.1, deadline - time.monotonic())) as conn:
                    return work(conn)
            except self._retryable as exc:
                if self._closed.is_set():
                    raise KeystoreUnavailable("the keystore is closed") from None
                if time.monotonic() + delay >= deadline:
                    log.warning("keystore unavailable: %s", type(exc).__name__)
                    raise KeystoreUnavailable() from None
                log.info("keystore connection lost (%s); retrying", type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                if on_retry is not None:
                    on_retry()

    @staticmethod
    def _stamp(conn: Any, name: str) -> None:
        """Inside the write's transaction: bump the counter (its row lock orders writers), mark `name`, notify."""
        (counter,) = conn.execute("UPDATE s3proxy_clock SET counter = counter + 1 WHERE id = 1 RETURNING counter").fetchone()
        conn.execute(
            "INSERT INTO s3proxy_changes (name, counter) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET counter = excluded.counter", (name, counter),
        )
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(counter)))

    def get(self, name: str) -> Entry | None:
        def work(conn: Any) -> Entry | None:
            row = conn.execute("SELECT version, blob FROM s3proxy_entries WHERE name = %s", (name,)).fetchone()
            return Entry(name, int(row[0]), bytes(row[1])) if row else None

        return self._run(work)

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        blob = bytes(blob)
        interrupted = False

        def work(conn: Any) -> int:
            with conn.transaction():
                if expected_version == 0:
                    cur = conn.execute(
                        "INSERT INTO s3proxy_entries (name, version, blob) VALUES (%s, 1, %s) ON CONFLICT (name) DO NOTHING",
                        (name, blob),
                    )
                else:
                    cur = conn.execute(
                        "UPDATE s3proxy_entries SET version = version + 1, blob = %s WHERE name = %s AND version = %s",
                        (blob, name, expected_version),
                    )
                if cur.rowcount == 1:
                    self._stamp(conn, name)
                    return expected_version + 1
            if interrupted:  # an earlier try may have committed before its connection dropped
                row = conn.execute("SELECT version, blob FROM s3proxy_entries WHERE name = %s", (name,)).fetchone()
                if row and bytes(row[1]) == blob:
                    return int(row[0])
            raise KeystoreConflict(name)

        def mark() -> None:
            nonlocal interrupted
            interrupted = True

        return self._run(work, on_retry=mark)

    def delete(self, name: str, expected_version: int) -> None:
        interrupted = False

        def work(conn: Any) -> None:
            with conn.transaction():
                cur = conn.execute("DELETE FROM s3proxy_entries WHERE name = %s AND version = %s", (name, expected_version))
                if cur.rowcount == 1:
                    self._stamp(conn, name)
                    return
            if interrupted and conn.execute("SELECT 1 FROM s3proxy_entries WHERE name = %s", (name,)).fetchone() is None:
                return  # gone: an earlier try committed before its connection dropped (or someone else removed it)
            raise KeystoreConflict(name)

        def mark() -> None:
            nonlocal interrupted
            interrupted = True

        self._run(work, on_retry=mark)

    def scan(self, prefix: str) -> Iterator[Entry]:
        def work(conn: Any) -> list[Entry]:
            rows = conn.execute(
                "SELECT name, version, blob FROM s3proxy_entries WHERE starts_with(name, %s) ORDER BY name", (prefix,)
            ).fetchall()
            return [Entry(n, int(v), bytes(b)) for n, v, b in rows]

        return iter(self._run(work))

    def replace_all(self, entries: list[Entry]) -> None:
        """Make the keystore hold exactly `entries` (a restore), in one transaction; every name that
        was there or is now goes through the change feed."""

        def work(conn: Any) -> None:
            with conn.transaction():
                old = [r[0] for r in conn.execute("DELETE FROM s3proxy_entries RETURNING name").fetchall()]
                for e in entries:
                    conn.execute("INSERT INTO s3proxy_entries (name, version, blob) VALUES (%s, %s, %s)",
                                 (e.name, e.version, bytes(e.blob)))
                for name in sorted(set(old) | {e.name for e in entries}):
                    self._stamp(conn, name)

        self._run(work)

    def changes(self, after: int) -> tuple[int, list[str]]:
        def work(conn: Any) -> tuple[int, list[str]]:
            # one statement, one snapshot: the counter and the names stamped up to it
            rows = conn.execute(
                "SELECT c.counter, ch.name FROM s3proxy_clock c LEFT JOIN s3proxy_changes ch "
                "ON ch.counter > %s AND ch.counter <= c.counter WHERE c.id = 1 ORDER BY ch.counter",
                (after,),
            ).fetchall()
            return int(rows[0][0]), [r[1] for r in rows if r[1] is not None]

        return self._run(work)

    def wait_for_change(self, timeout: float) -> None:
        """Wait on LISTEN for up to min(timeout, poll_interval); reconnect the listener if it dropped."""
        timeout = min(timeout, self.poll_interval)
        with self._listen_lock:
            if self._closed.is_set():
                return
            try:
                if self._listener is None:
                    self._listener = self._psycopg.connect(self._url, autocommit=True, **self._connect_kwargs)
                    self._listener.execute(f"LISTEN {CHANNEL}")
                    return  # (re)connected: the caller checks the counter now, whatever it missed meanwhile
                for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                    break
                return
            except self._psycopg.Error as exc:
                log.info("keystore LISTEN connection lost (%s); polling until it is back", type(exc).__name__)
                self._drop_listener()
        self._closed.wait(timeout)

    def _drop_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except self._psycopg.Error:
                pass
            self._listener = None

    def close(self) -> None:
        self._closed.set()
        self._pool.close()
        with self._listen_lock:
            self._drop_listener()
