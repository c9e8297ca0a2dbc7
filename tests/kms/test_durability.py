"""SIGKILL at any moment during key operations leaves a keystore that opens and holds every acknowledged change."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from s3proxy.format.auditchain import AuditOutcome
from s3proxy.kms.audit import FileAuditSink, verify_audit_log
from s3proxy.kms.caller import Caller
from s3proxy.kms.service import KeyService

ALICE = Caller("AKIAALICE", "alice", "000000000000")

# The child acknowledges each change on stdout only after the service call returned.
CHILD = textwrap.dedent("""
    import base64, json, sys
    from pathlib import Path
    from s3proxy.kms.caller import Caller
    from s3proxy.kms.service import KeyService

    svc = KeyService.open(Path(sys.argv[1]))
    alice = Caller("AKIAALICE", "alice", "000000000000")
    i = 0
    while True:
        kid = svc.create_key(alice, description=f"k{i}").key_id
        blob = svc.encrypt(alice, kid, f"p{i}".encode(), {"i": str(i)}).ciphertext_blob
        state = "Enabled"
        if i % 3 == 1:
            svc.disable_key(alice, kid)
            state = "Disabled"
        elif i % 3 == 2:
            svc.rotate_key_on_demand(alice, kid)
        print(json.dumps({"i": i, "kid": kid, "blob": base64.b64encode(blob).decode(), "state": state,
                          "versions": 2 if i % 3 == 2 else 1}), flush=True)
        i += 1
""")


@pytest.mark.parametrize("acks_before_kill", [1, 7, 25])
def test_sigkill_mid_loop_keeps_every_acknowledged_change(tmp_path: Path, acks_before_kill: int) -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=os.environ) as child:
        assert child.stdout is not None
        acked = [json.loads(child.stdout.readline()) for _ in range(acks_before_kill)]
        child.send_signal(signal.SIGKILL)  # the child is mid-loop: somewhere inside the next operations
        rest = child.stdout.read().decode().splitlines()
        child.wait(10)
    acked += [json.loads(line) for line in rest if line.endswith("}")]  # lines fully written before the kill

    audit_log = tmp_path / "kms" / "audit.log"
    svc = KeyService.open(tmp_path, audit=FileAuditSink(audit_log))
    try:
        for a in acked:
            md = svc.describe_key(ALICE, a["kid"])
            assert (md.description, md.key_state) == (f"k{a['i']}", a["state"])
            assert svc.records.key(a["kid"]).version == a["versions"]  # type: ignore[union-attr]
            if a["state"] == "Disabled":
                svc.enable_key(ALICE, a["kid"])
            blob = base64.b64decode(a["blob"])
            assert svc.decrypt(ALICE, blob, {"i": str(a["i"])}).plaintext == f"p{a['i']}".encode()
        svc.create_key(ALICE)  # and the reopened keystore takes new writes
        ik_audit = svc.integrity().keys().audit
    finally:
        svc.close()
    verdict = verify_audit_log(audit_log, ik_audit)
    assert verdict.outcome == AuditOutcome.INTACT, verdict.problems
