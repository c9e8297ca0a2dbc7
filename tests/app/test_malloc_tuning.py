"""`s3proxy serve` tunes glibc's malloc for 1 MiB buffers: few arenas, no give-back-and-fault-again churn."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

SETUP = textwrap.dedent("""
    import ctypes, ctypes.util, os, resource, sys, tempfile, threading
    from s3proxy.app import tune_malloc
    if sys.argv[1] == "tuned":
        assert tune_malloc()
""")

# Eight threads allocate and free 1 MiB blocks at once; glibc's malloc_info then lists one <heap> per arena.
ARENAS = SETUP + textwrap.dedent("""
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

# Batches of four 1 MiB buffers, allocated and freed as a GET or PUT does: page faults once warm.
FAULTS = SETUP + textwrap.dedent("""
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        batch = [bytearray(1 << 20) for _ in range(4)]
        del batch
    before = faults()
    for _ in range(100):
        batch = [bytearray(1 << 20) for _ in range(4)]
        del batch
    print(faults() - before)
""")


def probe(script: str, mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_worker_threads_share_at_most_two_malloc_arenas():
    assert probe(ARENAS, "tuned") <= 2
    assert probe(ARENAS, "plain") > 2  # the probe does make threads take arenas of their own


def test_freed_buffers_are_reused_without_faulting_their_pages_in_again():
    assert probe(FAULTS, "tuned") < 100  # 400 MiB allocated and freed: no give-back churn
    assert probe(FAULTS, "plain") > 10_000  # glibc's defaults: every buffer faults its 256 pages again
