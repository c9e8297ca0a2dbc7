"""Generates the at-rest format's test vectors (generate.json, verify.json, invalid.json); see docs/FORMAT.md §21.

Run `python3 tests/vectors/generate.py` from the repository root to rewrite the files; the test
suite checks that the committed files equal what `build()` yields. Fixed keys and contexts, 1 KiB
chunks so every case is small. The chunks have no randomness (nonces are derived); version 2's
sealed values take random salts, which each vector names (`salts`), so they are reproducible.

Every vector has a `kind`:
* object: generate — encrypting these parts under this key/context/chunk size (and, version 2,
  sealing these headers, client metadata, late values under this integrity key and name) must
  give exactly `stored`, `metadata` and `records`; verify — reading plaintext `first..last` of
  `stored` must fetch `ciphertext_start..end` and give `plaintext` (null = the whole object) and,
  version 2, the client `etag`, `size` and `checksums`; invalid — each named tampering must fail
  with IntegrityError (one failure type, no detail).
* keys: the integrity sub-keys of an integrity key.
* record: a sealed internal record (generate), or a tampered one under the keystore anchor
  `anchored` (invalid).
* audit: a log and head file, and the verdict `s3proxy audit verify` must reach.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from s3proxy.format.chunks import TAG_SIZE  # noqa: E402
from s3proxy.format.envelope import KEY_CHUNK_SIZE, KEY_MAC, KEY_PARTS, KEY_SIZE, KEY_VERSION, VERSION_1, Envelope, seal_envelope  # noqa: E402
from s3proxy.format.sizes import ciphertext_size  # noqa: E402
from s3proxy.streams import encrypt_stream  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "format")]
import vectors_v2  # noqa: E402

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))
CONTEXT = b"bucket\x00key\x00v1"
C = 1024
STEP = C + TAG_SIZE


def plaintext(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + 7 + seed) % 256 for i in range(n))


async def _one(data: bytes, key: bytes, part: int, context: bytes, chunk_size: int) -> bytes:
    async def src():
        yield data

    return b"".join([c async for c in encrypt_stream(src(), key, part_number=part, context=context, chunk_size=chunk_size)])


def seal(parts: list[tuple[int, bytes]], key: bytes = KEY, context: bytes = b"", chunk_size: int = C) -> tuple[bytes, dict[str, str], Envelope]:
    stored = b"".join(asyncio.run(_one(d, key, p, context, chunk_size)) for p, d in parts)
    if parts[0][0] == 0:
        env = Envelope.single(len(parts[0][1]), chunk_size, version=VERSION_1)
    else:
        env = Envelope.multipart([(p, len(d)) for p, d in parts], chunk_size, version=VERSION_1)
    return stored, seal_envelope(env, key, context), env


GENERATE = [
    # (name, why, parts, context, chunk size)
    ("empty", "one empty final chunk: just a tag", [(0, 0)], b"", C),
    ("one_byte", "a single short final chunk", [(0, 1)], b"", C),
    ("chunk_minus_one", "largest part that is one chunk", [(0, C - 1)], b"", C),
    ("exactly_one_chunk", "a full chunk then an empty final chunk", [(0, C)], b"", C),
    ("chunk_plus_one", "a full chunk then a 1-byte final chunk", [(0, C + 1)], b"", C),
    ("several_chunks", "three full chunks and a short final one", [(0, 3 * C + 5)], b"", C),
    ("with_context", "caller context bound into the derivation", [(0, 10)], CONTEXT, C),
    ("default_chunk_size", "the default 64 KiB chunk size", [(0, 300)], b"", 64 * 1024),
    ("multipart", "parts 1..3, equal parts and a short last one", [(1, 2 * C), (2, 2 * C), (3, 100)], b"", C),
    ("multipart_gap", "parts 1 and 4 (a part list with a gap)", [(1, C + 6), (4, 7)], b"", C),
]


def _parts(spec: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
    return [(p, plaintext(n, seed=p)) for p, n in spec]


def build_generate() -> list[dict[str, Any]]:
    out = []
    for name, why, spec, context, chunk_size in GENERATE:
        parts = _parts(spec)
        stored, meta, _ = seal(parts, KEY, context, chunk_size)
        out.append(
            {
                "name": name,
                "comment": why,
                "kind": "object",
                "data_key": KEY.hex(),
                "context": context.hex(),
                "chunk_size": chunk_size,
                "parts": [{"part_number": p, "plaintext": d.hex()} for p, d in parts],
                "stored": stored.hex(),
                "metadata": meta,
            }
        )
    return out


def build_verify() -> list[dict[str, Any]]:
    out = []
    for base, ranges in [
        ("several_chunks", [(0, 0), (5, C - 1), (C - 1, C), (C, 2 * C - 1), (3 * C, 3 * C + 4), (3 * C + 4, 3 * C + 4), (None, None)]),
        ("exactly_one_chunk", [(C - 1, C - 1), (None, None)]),
        ("multipart", [(2 * C - 1, 2 * C), (0, 4 * C + 99), (4 * C, 4 * C + 99), (C + 3, 3 * C + 1), (None, None)]),
        ("multipart_gap", [(C + 5, C + 6), (C + 6, C + 12), (None, None)]),
    ]:
        spec = next(s for n, _, s, _, _ in GENERATE if n == base)
        parts = _parts(spec)
        stored, meta, env = seal(parts)
        whole = b"".join(d for _, d in parts)
        for first, last in ranges:
            plan = env.plan_all() if first is None else env.plan(first, last)
            out.append(
                {
                    "name": f"{base}_{'all' if first is None else f'{first}_{last}'}",
                    "kind": "object",
                    "data_key": KEY.hex(),
                    "context": "",
                    "metadata": meta,
                    "stored": stored.hex(),
                    "first": first,
                    "last": last,
                    "ciphertext_start": plan.ciphertext_start,
                    "ciphertext_end": plan.ciphertext_end,
                    "plaintext": whole[plan.first : plan.last + 1].hex(),
                }
            )
    return out


def build_invalid() -> list[dict[str, Any]]:
    single = _parts([(0, 3 * C + 5)])
    stored, meta, _ = seal(single)
    chunks = [stored[i : i + STEP] for i in range(0, len(stored), STEP)]  # 3 full + 1 short
    multi = _parts([(1, 2 * C), (2, 2 * C), (3, 100)])
    mstored, mmeta, _ = seal(multi)
    p1 = ciphertext_size(2 * C, C)  # stored size of part 1 (and of part 2)
    other_stored, _, _ = seal(_parts([(0, 3 * C + 5)]), OTHER_KEY)
    ctx_stored, ctx_meta, _ = seal(single, KEY, CONTEXT)
    part7_stored, _, _ = seal([(7, single[0][1])])

    def flip(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

    def meta_with(base: dict[str, str], **changes: str) -> dict[str, str]:
        m = dict(base)
        for k, v in changes.items():
            m[k] = v
        return m

    cases: list[tuple[str, str, bytes, dict[str, str], bytes, bytes, Any]] = [
        # (name, why, stored, metadata, key, context, range or None for all)
        ("bit_flip_first_byte", "first ciphertext bit", flip(stored, 0), meta, KEY, b"", None),
        ("bit_flip_tag", "a tag bit of chunk 1", flip(stored, 2 * STEP - 1), meta, KEY, b"", None),
        ("bit_flip_final_chunk", "last byte of the final chunk", flip(stored, len(stored) - 1), meta, KEY, b"", None),
        ("truncated_at_chunk_boundary", "final chunk dropped: ends on a full chunk", stored[: 3 * STEP], meta, KEY, b"", None),
        ("truncated_inside_chunk", "cut in the middle of chunk 2", stored[: 2 * STEP + 100], meta, KEY, b"", None),
        ("truncated_inside_tag", "cut inside the final tag", stored[:-3], meta, KEY, b"", None),
        ("swapped_chunks", "chunks 0 and 1 exchanged", chunks[1] + chunks[0] + chunks[2] + chunks[3], meta, KEY, b"", None),
        ("duplicated_chunk", "chunk 0 in place of chunk 1", chunks[0] + chunks[0] + chunks[2] + chunks[3], meta, KEY, b"", None),
        ("dropped_chunk", "chunk 1 removed, size metadata unchanged", chunks[0] + chunks[2] + chunks[3], meta, KEY, b"", None),
        ("extended_after_final", "a sealed chunk appended after the final one", stored + chunks[1], meta, KEY, b"", None),
        ("trailing_garbage", "zero bytes after the final chunk", stored + b"\x00" * 20, meta, KEY, b"", None),
        ("spliced_from_other_object", "chunk 1 from an object under another data key", chunks[0] + other_stored[STEP : 2 * STEP] + chunks[2] + chunks[3], meta, KEY, b"", None),
        ("spliced_from_other_part", "part 2's first chunk in place of part 1's", mstored[p1 : p1 + STEP] + mstored[STEP:], mmeta, KEY, b"", None),
        ("parts_swapped", "parts 1 and 2 exchanged", mstored[p1 : 2 * p1] + mstored[:p1] + mstored[2 * p1 :], mmeta, KEY, b"", None),
        ("wrong_part_number", "part encrypted as part 7 stored as a single PUT", part7_stored, meta, KEY, b"", None),
        ("wrong_key", "another data key", stored, meta, OTHER_KEY, b"", None),
        ("wrong_context", "written with a context, read without", ctx_stored, ctx_meta, KEY, b"", None),
        ("wrong_context_ranged", "a ranged read with the wrong context", ctx_stored, ctx_meta, KEY, b"other", (C, C)),
        ("size_lie", "s3proxy-size changed (MAC no longer matches)", stored, meta_with(meta, **{KEY_SIZE: str(3 * C + 4)}), KEY, b"", (0, 0)),
        ("chunk_size_lie", "s3proxy-cs changed", stored, meta_with(meta, **{KEY_CHUNK_SIZE: str(2 * C)}), KEY, b"", (0, 0)),
        ("parts_lie", "part sizes exchanged, total unchanged", mstored, meta_with(mmeta, **{KEY_PARTS: "100,2048*2"}), KEY, b"", (0, 0)),
        ("parts_added", "a part list added to a single-part envelope", stored, meta_with(meta, **{KEY_PARTS: "3077"}), KEY, b"", (0, 0)),
        ("mac_flipped", "one MAC character changed", stored, meta_with(meta, **{KEY_MAC: ("A" if meta[KEY_MAC][0] != "A" else "B") + meta[KEY_MAC][1:]}), KEY, b"", (0, 0)),
        ("mac_missing", "no MAC", stored, {k: v for k, v in meta.items() if k != KEY_MAC}, KEY, b"", (0, 0)),
        ("version_relabelled", "s3proxy-v=2 on a version-1 envelope", stored, meta_with(meta, **{KEY_VERSION: "2"}), KEY, b"", (0, 0)),
        ("version_unknown", "s3proxy-v=3", stored, meta_with(meta, **{KEY_VERSION: "3"}), KEY, b"", (0, 0)),
        ("empty_body", "nothing stored at all", b"", meta, KEY, b"", None),
    ]
    return [
        {
            "name": name,
            "comment": why,
            "kind": "object",
            "data_key": key.hex(),
            "context": context.hex(),
            "metadata": metadata,
            "stored": data.hex(),
            "first": None if rng is None else rng[0],
            "last": None if rng is None else rng[1],
            "expect": "IntegrityError",
        }
        for name, why, data, metadata, key, context, rng in cases
    ]


def build() -> dict[str, list[dict[str, Any]]]:
    return {
        "generate": build_generate() + vectors_v2.build_generate(),
        "verify": build_verify() + vectors_v2.build_verify(),
        "invalid": build_invalid() + vectors_v2.build_invalid(),
    }


def dump(vectors: list[dict[str, Any]]) -> str:
    return json.dumps({"format": "s3proxy at-rest format, versions 1 and 2 (docs/FORMAT.md)", "vectors": vectors}, indent=1) + "\n"


def main() -> None:
    for kind, vectors in build().items():
        (HERE / f"{kind}.json").write_text(dump(vectors))


if __name__ == "__main__":
    main()
