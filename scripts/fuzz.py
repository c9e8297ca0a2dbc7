"""The long fuzz run: the hardening properties with many more examples, and coverage-guided fuzzing
of the pure parsers when atheris is installed.

    python scripts/fuzz.py                      # hypothesis, 5000 examples per property (~10-20 min)
    python scripts/fuzz.py --examples 50000     # longer
    python scripts/fuzz.py --atheris 600        # also 600 s of atheris (pip install atheris) on the parsers

The in-suite run (pytest tests/hardening) uses the same properties with a few dozen examples each.
Exit status is pytest's (and atheris stops at the first input that raises anything but an S3Error).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["tests/hardening/test_fuzz_parsers.py", "tests/hardening/test_fuzz_wire.py"]


def run_hypothesis(examples: int, seed: str | None, extra: list[str]) -> int:
    env = dict(os.environ, S3PROXY_FUZZ_EXAMPLES=str(examples))
    cmd = [sys.executable, "-m", "pytest", *MODULES, "-q", "-p", "no:cacheprovider", "-o", "timeout=0"]
    if seed:
        cmd += [f"--hypothesis-seed={seed}"]
    return subprocess.call(cmd + extra, cwd=ROOT, env=env)


def one_input(data: bytes) -> None:
    """Feed one input to every pure parser; only an S3Error (4xx, or 501) is an acceptable failure."""
    from multidict import CIMultiDict

    from s3proxy import errors
    from s3proxy.auth.verify import authenticate
    from s3proxy.ops import xml
    from s3proxy.ops.headers import parse_range
    from s3proxy.auth.context import decode_query
    from s3proxy.http.server import split_path
    from tests.auth.helpers import EXAMPLE_NOW, example_store

    text = data.decode("utf-8", "surrogateescape")
    calls = [
        lambda: parse_range(text) and parse_range(text).resolve(1 << 20),
        lambda: xml.parse(data, "Delete"),
        lambda: split_path("/" + text),
        lambda: decode_query(text, plus_is_space=True),
        lambda: authenticate("GET", "/b/k", "", CIMultiDict({"host": "h", "authorization": text, "x-amz-date": "20130524T000000Z",
                                                             "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}), example_store(), now=EXAMPLE_NOW, region="us-east-1"),
        lambda: authenticate("GET", "/b/k", text, CIMultiDict({"host": "h"}), example_store(), now=EXAMPLE_NOW, region="us-east-1"),
    ]
    for call in calls:
        try:
            call()
        except errors.S3Error as exc:
            if exc.status >= 500 and exc.code != "NotImplemented":
                raise


def run_atheris(seconds: int) -> int:
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        print("atheris is not installed (pip install atheris); skipping the coverage-guided run", file=sys.stderr)
        return 0
    sys.path.insert(0, str(ROOT))
    with atheris.instrument_imports():
        import s3proxy.auth.sigv4  # noqa: F401
        import s3proxy.http.headers  # noqa: F401
        import s3proxy.http.server  # noqa: F401
        import s3proxy.http.xml  # noqa: F401
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}"], one_input)
    atheris.Fuzz()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000, help="hypothesis examples per property")
    parser.add_argument("--seed", help="hypothesis seed (default random)")
    parser.add_argument("--atheris", type=int, default=0, metavar="SECONDS", help="also run atheris for this long")
    args, extra = parser.parse_known_args()
    status = run_hypothesis(args.examples, args.seed, extra)
    if args.atheris:
        status = run_atheris(args.atheris) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
