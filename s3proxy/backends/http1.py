"""A lean HTTP/1.1 client: every request the S3 backend sends goes through it.

aiohttp's client, which the backend used before, lets the event loop allocate each received
piece, its parser copy the body out of it, and a stream reader queue the copies. Per GB of
ciphertext that was 0.25-0.4 CPU-s of a proxy GET's ~0.75 on the 2-core development machine
(issue 5), and per small request it built a dozen objects the backend never needed (issue 21).
Here the kernel writes received bytes straight into large buffers (asyncio's BufferedProtocol,
recv_into) and the body is handed on as views of them: one copy, the kernel's.

- Requests: the caller gives the method, the target, every header (Host and Content-Length
  among them: they are signed) and either a small body (sent with the head in one write) or a
  stream of buffers (written as they come, waiting while the socket's buffer is full). Never
  chunked. A server that answers before the whole stream was sent has its answer returned if it
  is an error (the connection is then closed, not reused) and refused if it claims success.

- Pieces are read-only memoryviews of buffers that are never written again after a piece of them
  was handed on, so a consumer may keep them as long as it likes.
- Framing: Content-Length, chunked, or (without either) until the server closes; 1xx interim
  responses are skipped. A malformed response or a body cut short raises `ProtocolError`.
- Memory: reading pauses once HIGH_WATER bytes wait unconsumed, so a slow client bounds it.
- Connections are kept alive in a small pool per (scheme, host, port), at most LIMIT in use at
  once (as aiohttp's default; further requests wait). A pooled connection the
  server had closed meanwhile is noticed before any response byte and the request is sent once
  more on a fresh one (unless part of a stream was already taken); any other failure is the
  caller's to retry.
- Every wait (connect, each write the socket holds back, each piece of the response) is bounded
  by a timeout.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from s3proxy.buffers import Buffer, Recycler

BUFFER = 1024 * 1024  # a receive buffer while a large body is due; the kernel fills it across several reads
SMALL_BUFFER = 64 * 1024  # one for heads and small bodies
MIN_FREE = 64 * 1024  # a buffer with less room left than this (an eighth of a small one) is retired
HIGH_WATER = 2 * 1024 * 1024  # unconsumed body bytes at which reading pauses...
LOW_WATER = 512 * 1024  # ...and below which it resumes
MAX_HEAD = 64 * 1024  # status line and headers (and a chunked body's trailer)
MAX_LINE = 1024  # a chunk-size line, with any extensions
MAX_READ = 16 * 1024 * 1024  # the most read() takes: XML documents (a 1,000-key listing is a few MB)
SMALL_BODY = 64 * 1024  # a request body (or a stream's first piece) up to this is written with the head
IDLE_SECONDS = 15.0  # a pooled connection unused this long is closed, not reused
IDLE_PER_HOST = 16
LIMIT = 100  # connections in use at once, as aiohttp's default; more requests wait for one

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)
Origin = tuple[str, str, int]  # scheme, host, port: what a connection is pooled under


class ProtocolError(ConnectionError):
    """The server sent something that is not a well-formed HTTP/1.1 response, or broke off."""


class _Connection(asyncio.BufferedProtocol):
    """One connection: receives into large buffers, parses one response at a time, queues its body."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._raw = bytearray()
        self._buf = memoryview(self._raw)
        self._end = 0  # self._buf[:_end] was received
        self._recycler = Recycler(BUFFER)
        self._state = _DONE
        self._head = bytearray()  # status line and headers as they arrive (also chunk-size lines, trailers)
        self._left = 0  # body bytes still due: of the Content-Length, or of the current chunk
        self._pieces: collections.deque[memoryview] = collections.deque()
        self._queued = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self.head: tuple[int, str, CIMultiDict[str]] | None = None
        self.received = False  # any byte of the current response
        self.reusable = False
        self.idle_since = 0.0
        self._head_only = False  # the response to a HEAD: no body, whatever its headers say
        self._writable: asyncio.Future[None] | None = None  # set while the transport's buffer is full

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self._raw) - self._end < min(MIN_FREE, len(self._raw) // 8 + 1):
            self._renew()
        return self._buf[self._end :]

    def _renew(self) -> None:
        """A fresh receive buffer: the old one is never written again (its views stay valid)."""
        self._recycler.retire(self._raw)
        large = self._state in (_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _UNTIL_CLOSE) and not (
            self._state == _LENGTH and self._left < BUFFER // 4
        )
        self._raw = self._recycler.take() if large else bytearray(SMALL_BUFFER)
        self._buf, self._end = memoryview(self._raw), 0

    def idle(self) -> None:
        """Between responses in the pool: keep at most a small buffer."""
        self._recycler.clear()
        if len(self._raw) > SMALL_BUFFER:
            self._raw, self._end = bytearray(), 0
            self._buf = memoryview(self._raw)

    def buffer_updated(self, nbytes: int) -> None:
        start, self._end = self._end, self._end + nbytes
        self.received = True
        try:
            self._feed(self._buf[start : self._end])
        except ProtocolError as exc:
            self._fail(exc)
            self.close()

    def eof_received(self) -> bool:
        if self._state == _UNTIL_CLOSE:
            self._finish()
        else:
            self._fail(ProtocolError("The server closed the connection before the response was complete."))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(ProtocolError("The connection was lost before the response was complete."))
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # one request at a time

    def send(self, request: bytes, head_only: bool = False) -> None:
        """A whole request in one write."""
        self.start(head_only)
        self.transport.write(request)  # type: ignore[union-attr]

    def start(self, head_only: bool = False) -> None:
        """Await a new response: the request is written next (`send`, or `write` piece by piece)."""
        if self.transport is None or self.transport.is_closing():
            raise ProtocolError("The connection is closed.")
        self._state, self._head, self.head, self.received, self.reusable = _HEAD, bytearray(), None, False, False
        self._head_only = head_only
        self._pieces.clear()
        self._queued = 0
        self._failure = None
        if self._paused:
            self._paused = False
            self.transport.resume_reading()

    async def write(self, data: Buffer, timeout: float) -> None:
        """More of the request body; waits (at most `timeout`) while the socket holds back what was written."""
        if self._failure is not None:
            raise self._failure
        if self.transport is None or self.transport.is_closing():
            raise ProtocolError("The connection was lost while the request was sent.")
        self.transport.write(data)
        writable = self._writable
        if writable is not None and not self.answered:
            async with asyncio.timeout(timeout):
                await asyncio.shield(writable)  # resumed, or woken by an answer or a failure
        if self._failure is not None:
            raise self._failure

    @property
    def answered(self) -> bool:
        """A response head arrived (or the connection failed): the server wants no more of the request."""
        return self.head is not None or self._failure is not None

    async def response_head(self, timeout: float) -> tuple[int, str, CIMultiDict[str]]:
        while self.head is None:
            await self._wait(timeout)
        return self.head

    async def next_piece(self, timeout: float) -> memoryview | None:
        """The next piece of the body, None at its end."""
        while not self._pieces:
            if self._state == _DONE:
                return None
            await self._wait(timeout)
        piece = self._pieces.popleft()
        self._queued -= len(piece)
        if self._paused and self._queued < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return piece

    @property
    def finished(self) -> bool:
        return self._state == _DONE and self._failure is None

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    async def _wait(self, timeout: float) -> None:
        if self._failure is not None:
            raise self._failure
        self._waiter = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._writable is not None and not self._writable.done():  # a writer need not wait for room any more
            self._writable.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._state != _DONE and self._failure is None:
            self._failure = exc
        self._wake()

    def _finish(self) -> None:
        self._state = _DONE
        self._wake()

    # parsing

    def _feed(self, data: memoryview) -> None:
        while data:
            state = self._state
            if state == _DONE:
                self.reusable = False  # bytes nobody asked for: never reuse this connection
                return
            if state in (_LENGTH, _CHUNK_DATA):
                take = min(len(data), self._left)
                self._push(data[:take])
                data, self._left = data[take:], self._left - take
                if not self._left:
                    if state == _LENGTH:
                        self._finish()
                    else:
                        self._state, self._head = _CHUNK_END, bytearray()
            elif state == _UNTIL_CLOSE:
                self._push(data)
                return
            else:
                data = self._line_state(data)

    def _line_state(self, data: memoryview) -> memoryview:
        """Head, chunk-size line, chunk end or trailer: collect text up to its terminator, then act on it."""
        state = self._state
        terminator = b"\r\n\r\n" if state in (_HEAD, _TRAILER) else b"\r\n"
        limit = MAX_HEAD if len(terminator) == 4 else MAX_LINE
        before = len(self._head)
        self._head += data[: limit + len(terminator) - before]  # never more of the body than the text can be
        at = self._head.find(terminator, max(0, before - len(terminator) + 1))
        if at < 0:
            if len(self._head) > limit:
                raise ProtocolError("The response head is too large." if state == _HEAD else "A chunk line is too long.")
            return data[len(data) :]
        consumed = at + len(terminator) - before  # of `data`
        text, self._head = bytes(self._head[:at]), bytearray()
        rest = data[consumed:]
        if state == _HEAD:
            self._on_head(text)
        elif state == _CHUNK_SIZE:
            size = text.split(b";", 1)[0].strip()
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise ProtocolError("A chunk size is malformed.")
            self._left = int(size, 16)
            self._state = _CHUNK_DATA
            if not self._left:  # the last chunk; trailer fields, if any, end with an empty line
                self._state, self._head = _TRAILER, bytearray(b"\r\n")  # the line break just read starts it
        elif state == _CHUNK_END:
            if text:
                raise ProtocolError("A chunk is longer than its size.")
            self._state = _CHUNK_SIZE
        else:  # trailer fields are ignored (S3 sends none that matter for an object body)
            self._finish()
        return rest

    def _on_head(self, text: bytes) -> None:
        lines = text.decode("latin-1").split("\r\n")  # one character per byte; values re-read as UTF-8 below
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not (code.isascii() and code.isdigit()):
            raise ProtocolError("The response status line is malformed.")
        status = int(code)
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[:1] in (" ", "\t"):
                raise ProtocolError("A response header is malformed.")
            value = value.strip(" \t")
            headers.add(name, value if value.isascii() else value.encode("latin-1").decode("utf-8", "surrogateescape"))
        if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): the real response follows
            self._state = _HEAD
            return
        tokens = ",".join(headers.getall("Connection", ())).lower()
        self.reusable = version == "HTTP/1.1" and "close" not in tokens
        lengths = {v.strip() for v in ",".join(headers.getall("Content-Length", ())).split(",") if v.strip()}
        if self._head_only or status in (204, 304):
            self._state = _DONE
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif lengths:
            if len(lengths) != 1 or not (length := next(iter(lengths))).isascii() or not length.isdigit():
                raise ProtocolError("The response's Content-Length is malformed.")
            self._left = int(length)
            self._state = _LENGTH if self._left else _DONE
        else:
            self._state, self.reusable = _UNTIL_CLOSE, False
        self.head = (status, reason, headers)
        self._wake()

    def _push(self, piece: memoryview) -> None:
        self._pieces.append(piece.toreadonly())
        self._queued += len(piece)
        if not self._paused and self._queued >= HIGH_WATER and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()


class Response:
    """A response whose body is read piece by piece; release() hands its connection back (or closes it)."""

    def __init__(self, conn: _Connection, pool: Pool, head: tuple[int, str, CIMultiDict[str]], timeout: float) -> None:
        """Holds one of the pool's permits until released."""
        self._conn: _Connection | None = conn
        self._pool = pool
        self._timeout = timeout
        self.status, self.reason, headers = head
        self.headers = CIMultiDictProxy(headers)

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> memoryview:
        if self._conn is None:
            raise StopAsyncIteration
        piece = await self._conn.next_piece(self._timeout)
        if piece is None:
            self.release()
            raise StopAsyncIteration
        return piece

    async def read(self) -> bytes:
        """The whole body (a ProtocolError past MAX_READ bytes); releases the connection."""
        data = bytearray()
        try:
            async for piece in self:
                if len(data) + len(piece) > MAX_READ:
                    raise ProtocolError("The response body is larger than expected.")
                data += piece
        finally:
            self.release()
        return bytes(data)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.give_back(conn)

    def __del__(self) -> None:  # dropped unreleased: its permit must not be lost
        self.release()


class Pool:
    """Keep-alive connections for body requests, per (scheme, host, port)."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, ssl_context: ssl.SSLContext | None = None,
                 resolve: Callable[[str], Awaitable[str]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl = ssl_context
        self._resolve = resolve  # a host name to the address to connect to (tests point names at loopback)
        self._clock = clock
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._keys: dict[_Connection, tuple[str, str, int]] = {}
        self._permits = asyncio.Semaphore(LIMIT)

    async def get(self, url: URL, headers: Mapping[str, str]) -> Response:
        """Send a GET to `url` (its Host header made from it); the response once its head arrived."""
        if url.scheme not in ("http", "https") or not url.raw_host or url.port is None:
            raise ValueError("an http(s) URL with a host is required")
        headers = {"Host": host_header(url.scheme, url.raw_host, url.port), **headers}
        return await self.request("GET", (url.scheme, url.raw_host, url.port), url.raw_path_qs, headers)

    async def request(self, method: str, origin: Origin, target: str, headers: Mapping[str, str], body: bytes = b"",
                      stream: AsyncIterable[Buffer] | None = None) -> Response:
        """Send a request; the response once its head arrived, its body unread.

        `headers` are sent as given and must hold Host, and Content-Length when there is a body
        (`body`, small, or `stream`, whose pieces must add up to it).
        """
        if origin[0] not in ("http", "https") or not origin[1]:
            raise ValueError("an http(s) origin with a host is required")
        message = _request_bytes(method, target, headers)
        if body:
            message += body
        sending = _Sending(stream) if stream is not None else None
        await self._permits.acquire()
        try:
            conn = self._pooled(origin)
            if conn is not None:
                try:
                    return await self._exchange(conn, method, message, sending)
                except ProtocolError:
                    if conn.received or (sending is not None and sending.started):
                        raise
                    # closed by the server while it idled: send once more on a fresh connection
            return await self._exchange(await self._connect(origin), method, message, sending)
        except BaseException:
            self._permits.release()
            raise

    async def _exchange(self, conn: _Connection, method: str, message: bytes, sending: _Sending | None) -> Response:
        try:
            if sending is None:
                conn.send(message, method == "HEAD")
            else:
                await sending.send(conn, message, self._read_timeout)
            head = await conn.response_head(self._read_timeout)
        except BaseException:
            self._drop(conn)
            raise
        if sending is not None and sending.cut_short:
            conn.reusable = False  # the rest of the request body never went out: the connection is spent
        return Response(conn, self, head, self._read_timeout)

    def give_back(self, conn: _Connection) -> None:
        """The end of a response: its connection back to the pool (or closed), its permit back."""
        self._permits.release()
        key = self._keys.get(conn)
        idle = self._idle.setdefault(key, []) if key is not None else []
        if not (conn.finished and conn.reusable) or key is None or len(idle) >= IDLE_PER_HOST:
            self._drop(conn)
            return
        conn.idle_since = self._clock()
        conn.idle()
        idle.append(conn)

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._keys.clear()

    def _pooled(self, key: Origin) -> _Connection | None:
        idle = self._idle.get(key, [])
        while idle:
            conn = idle.pop()
            transport = conn.transport
            fresh = self._clock() - conn.idle_since < IDLE_SECONDS
            if fresh and conn.reusable and transport is not None and not transport.is_closing():
                return conn
            self._drop(conn)
        return None

    async def _connect(self, key: Origin) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        address = await self._resolve(host) if self._resolve is not None else host
        context = None
        if scheme == "https":
            context = self._ssl if self._ssl is not None else ssl.create_default_context()
        async with asyncio.timeout(self._connect_timeout):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop), address, port, ssl=context, server_hostname=host if context else None
            )
        self._keys[conn] = key
        return conn

    def _drop(self, conn: _Connection) -> None:
        self._keys.pop(conn, None)
        conn.close()


class _Sending:
    """A request body stream on its way out: whether any of it was taken, and whether all of it went."""

    __slots__ = ("cut_short", "started", "stream")

    def __init__(self, stream: AsyncIterable[Buffer]) -> None:
        self.stream = stream
        self.started = False
        self.cut_short = False

    async def send(self, conn: _Connection, head: bytes, timeout: float) -> None:
        """The head, then the stream's pieces (a small first piece in the same write), until the end or an answer."""
        conn.start()
        pieces = self.stream.__aiter__()
        try:
            async for piece in pieces:
                self.started = True
                if conn.answered:  # an early answer (an error, or the connection gone): stop sending
                    self.cut_short = True
                    break
                if head:
                    if len(piece) <= SMALL_BODY:
                        piece = head + piece
                    else:
                        await conn.write(head, timeout)
                    head = b""
                await conn.write(piece, timeout)
            if head:  # an empty stream
                await conn.write(head, timeout)
        finally:
            close = getattr(pieces, "aclose", None)
            if self.cut_short and close is not None:
                await close()
        if self.cut_short and conn.head is not None and conn.head[0] < 300:
            raise ProtocolError("The server answered with success before the request body was sent.")


def host_header(scheme: str, host: str, port: int) -> str:
    """The Host header for a connection to host:port (the port left out when it is the scheme's default)."""
    if ":" in host:
        host = f"[{host}]"
    return host if port == {"http": 80, "https": 443}.get(scheme) else f"{host}:{port}"


def _request_bytes(method: str, target: str, headers: Mapping[str, str]) -> bytes:
    for name in headers:
        if not name or ":" in name:
            raise ValueError("a request header name is malformed")
    text = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    lines = len(headers) + 2  # every line break must be one written here: a CR, LF or NUL given would start another
    if text.count("\n") != lines or text.count("\r") != lines or "\0" in text:
        raise ValueError("a request header contains a line break")
    if " " in target or "\t" in target:
        raise ValueError("the request target contains white space")
    return text.encode("utf-8", "surrogateescape")
