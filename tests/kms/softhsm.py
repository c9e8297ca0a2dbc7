"""SoftHSM2 for the tests: a token directory and configuration of the test's own, tokens made by softhsm2-util
(no manual step), and a way to take every token away and bring it back while a proxy serves."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.system_packages import SOFTHSM2_MODULE, require

PIN, SO_PIN = "24681357", "97531864"


class SoftHsm:
    def __init__(self, root: Path) -> None:
        self.tokens = root / "tokens"
        self.tokens.mkdir(parents=True)
        self.conf = root / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
                             "slots.removable = false\n")
        self.env = {"SOFTHSM2_CONF": str(self.conf)}
        self.module = SOFTHSM2_MODULE

    def init_token(self, label: str, pin: str = PIN) -> None:
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", SO_PIN],
                       env={**os.environ, **self.env}, check=True, capture_output=True, timeout=60)

    def uri(self, token: str, key: str, *, pin: str | None = PIN) -> str:
        return f"pkcs11:token={token};object={key}" + (f"?pin-value={pin}" if pin else "")

    def take_away(self) -> None:
        """Every token disappears (as an HSM that is pulled or unreachable)."""
        self.tokens.rename(self.tokens.with_name("tokens-away"))

    def bring_back(self) -> None:
        self.tokens.with_name("tokens-away").rename(self.tokens)


@pytest.fixture
def softhsm(tmp_path: Path) -> SoftHsm:
    require("softhsm2")
    pytest.importorskip("pkcs11", reason="python-pkcs11 is missing: pip install -e '.[test]' (the hsm extra)")
    return SoftHsm(tmp_path / "softhsm")


def memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any readable mapping of process `pid` holds `needle` (a memory dump, read from /proc)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (r)", line)
            if not m or "[vvar]" in line or "[vsyscall]" in line:
                continue
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


def files_hold(root: Path, needle: bytes) -> list[Path]:
    """Every file under `root` holding `needle` raw, in hex or in base64."""
    import base64

    forms = (needle, needle.hex().encode(), base64.b64encode(needle))
    return [p for p in root.rglob("*") if p.is_file() and any(f in p.read_bytes() for f in forms)]


