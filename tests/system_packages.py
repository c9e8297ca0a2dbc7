"""The Debian packages the suite needs that pip cannot give, in one table.

`scripts/test` (the README's test command, which .ci/run calls) installs them before pytest
starts: `python3 -m tests.system_packages` apt-get installs what is missing, when it runs as root
with apt-get. Tests never install anything: a test that needs a package calls `require(name)`,
which skips with the command to run when the package is missing, or fails when the set-up said
it installed everything (S3PROXY_SYSTEM_PACKAGES=installed), so CI cannot skip silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

INSTALLED_MARK = "S3PROXY_SYSTEM_PACKAGES"


def command(name: str) -> str | None:
    """The path of command `name` on PATH or in /usr/sbin (where Debian puts daemons such as nginx)."""
    return shutil.which(name, path=os.environ.get("PATH", os.defpath) + ":/usr/sbin")


def _command_missing(name: str) -> Callable[[], str | None]:
    return lambda: None if command(name) else f"{name} is not installed"


def _ruby_missing() -> str | None:
    if shutil.which("ruby") is None:
        return "ruby is not installed"
    probe = subprocess.run(["ruby", "-e", "require 'aws-sdk-s3'; require 'aws-sdk-kms'"], capture_output=True, timeout=60)
    return None if probe.returncode == 0 else "the Ruby gems aws-sdk-s3/aws-sdk-kms are missing"


SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"  # where Debian's softhsm2 puts its PKCS#11 module


def _softhsm2_missing() -> str | None:
    if not os.path.exists(SOFTHSM2_MODULE) or command("softhsm2-util") is None:
        return "SoftHSM2 (softhsm2-util and its PKCS#11 module) is not installed"
    return None


# package -> (why the suite needs it, a probe: why it is unusable, or None)
PACKAGES: dict[str, tuple[str, Callable[[], str | None]]] = {
    "ruby-aws-sdk-s3": ("the official Ruby S3 Encryption Client (v2), an interop peer", _ruby_missing),
    "docker-compose": ("`docker-compose config` checks the compose file", _command_missing("docker-compose")),
    "nginx-light": ("the benchmarks' pass-through reference", _command_missing("nginx")),
    "haproxy": ("`haproxy -c` checks the load balancer of docker-compose.scale.yml", _command_missing("haproxy")),
    "openssl": ("wraps key material in AWS's import walkthrough", _command_missing("openssl")),
    "xxd": ("hex-encodes the AES key in AWS's RSA_AES_KEY_WRAP import walkthrough", _command_missing("xxd")),
    "softhsm2": ("a PKCS#11 token: the KMS root key and key store in hardware", _softhsm2_missing),
    "rclone": ("an interop client (tests/interop/): sync, check, SSE-C over TLS", _command_missing("rclone")),
    "s3cmd": ("an interop client (tests/interop/): SigV2 and SigV4, sync, signed URLs", _command_missing("s3cmd")),
}


def missing(package: str) -> str | None:
    return PACKAGES[package][1]()


def require(package: str) -> None:
    """Skip the calling test when `package` is missing (fail when the set-up claimed it installed it)."""
    reason = missing(package)
    if reason is not None:
        skip_or_fail(f"{reason}; `scripts/test` installs Debian's {package} ({PACKAGES[package][0]})")


def skip_or_fail(message: str, mark: str = INSTALLED_MARK) -> None:
    """Skip the calling test for want of something the set-up provides, or fail it when the set-up said it
    provided it (environment variable `mark` = installed), so CI cannot skip silently."""
    import pytest

    if os.environ.get(mark) == "installed":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def install_missing(out=sys.stderr) -> bool:
    """apt-get install every missing package (root with apt-get only); True when none is missing after."""
    wanted = [p for p in PACKAGES if missing(p) is not None]
    if not wanted:
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"not root with apt-get: the tests needing {', '.join(wanted)} will be skipped "
              f"(apt-get install -y {' '.join(wanted)})", file=out)
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *wanted]
    if subprocess.run(install, capture_output=True, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        done = subprocess.run(install, capture_output=True, env=env)
        if done.returncode != 0:
            print((done.stdout + done.stderr)[-3000:].decode(errors="replace"), file=out)
    still = [p for p in wanted if missing(p) is not None]
    if still:
        print(f"still missing after apt-get: {', '.join(still)}", file=out)
    return not still


if __name__ == "__main__":
    sys.exit(0 if install_missing() else 1)
