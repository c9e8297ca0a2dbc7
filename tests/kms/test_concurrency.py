"""The service under concurrent use: data keys from many threads while the key rotates and changes."""

from __future__ import annotations

import threading
from pathlib import Path

from s3proxy.kms.caller import Caller
from s3proxy.kms.service import KeyService

ALICE = Caller("AKIAALICE", "alice", "000000000000")


def test_data_keys_during_rotation_and_updates(tmp_path: Path) -> None:
    svc = KeyService.open(tmp_path)
    kid = svc.create_key(ALICE).key_id
    made: list[tuple[bytes, bytes, dict[str, str]]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(60):
                ctx = {"w": str(n), "i": str(i)}
                dk = svc.generate_data_key(ALICE, kid, ctx)
                assert svc.decrypt_data_key(ALICE, dk.ciphertext_blob, ctx).plaintext == dk.plaintext
                with lock:
                    made.append((dk.plaintext, dk.ciphertext_blob, ctx))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def churn() -> None:
        for i in range(10):
            svc.rotate_key_on_demand(ALICE, kid)
            svc.tag_resource(ALICE, kid, {"round": str(i)})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)] + [threading.Thread(target=churn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    svc.close()

    reopened = KeyService.open(tmp_path)
    assert reopened.records.key(kid).version == 11  # type: ignore[union-attr]
    assert reopened.list_resource_tags(ALICE, kid) == {"round": "9"}
    for plaintext, blob, ctx in made:
        assert reopened.decrypt_data_key(ALICE, blob, ctx).plaintext == plaintext
    reopened.close()
