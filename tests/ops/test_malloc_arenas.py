"""`s3proxy serve` caps glibc's malloc arenas: worker threads would otherwise each keep their own."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Eight threads allocate and free 1 MiB blocks at once; glibc's malloc_info then lists one <heap> per arena.
PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, os, sys, tempfile, threading
    from s3proxy.app import limit_malloc_arenas
    if sys.argv[1] == "capped":
        assert limit_malloc_arenas(2)
    barrier = threading.Barrier(8)
    def work():
        barrier.wait()
        for _ in range(200):
            blocks = [bytearray(1 << 20) for _ in range(4)]
            del blocks
    threads = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = os.path.join(tempfile.mkdtemp(), "info.xml")
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(open(path).read().count("<heap nr="))
""")


def arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_info")
def test_worker_threads_share_at_most_two_malloc_arenas():
    assert arenas("capped") <= 2
    assert arenas("uncapped") > 2  # the probe does make threads take arenas of their own

