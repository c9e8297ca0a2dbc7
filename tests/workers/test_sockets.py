"""serve --workers: each worker listens on a socket of its own on the shared port (SO_REUSEPORT), so the
kernel spreads connections across workers; the supervisor's bound-only socket reserves the port."""

from __future__ import annotations

import socket

from s3proxy import workers


def test_workers_listen_on_one_port_each_with_its_own_socket():
    reservation = workers.bind("127.0.0.1", 0, listen=False)
    port = reservation.getsockname()[1]
    first, second = (workers.bind("127.0.0.1", port, listen=True) for _ in range(2))
    try:
        assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert first.getsockname()[1] == second.getsockname()[1] == port
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # accepted by one of the two listeners
    finally:
        for sock in (reservation, first, second):
            sock.close()


def test_a_port_held_without_reuseport_is_refused():
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    try:
        try:
            workers.bind("127.0.0.1", plain.getsockname()[1], listen=True).close()
        except OSError:
            return
        raise AssertionError("bound a port another process holds without SO_REUSEPORT")
    finally:
        plain.close()
