"""Write one object under every mode, then show how the modes differ, from what was observed.

SSE-S3, SSE-C, SSE-KMS and client-side encryption (with a KMS key, and with a key only the client
holds) each write the same plaintext through the proxy. Every cell of the comparison table is
derived from an observation, never typed in: who can read the object back with S3 credentials
alone, whose kms:Decrypt unwraps the stored key, what disabling a key does, how many bytes the
proxy received. It then shows what the backend holds (first bytes, overhead, envelope metadata,
a search for the plaintext), what each failure looks like, and throughput and KMS calls per mode.
Writes OUT/compare_modes.md and the chart OUT/compare_modes.png (needs matplotlib).

    python3 examples/compare_modes.py --endpoint http://127.0.0.1:8080 --out report/

The same by hand: see examples/sse_s3.py, sse_c.py, sse_kms.py and client_side.py (awscli in each docstring).
"""

from __future__ import annotations

import argparse
import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import demolib

SEED_COLUMNS = ("En/decrypt", "Secret key - storage", "Secret key - management", "Server or Client Encryption")
SITUATIONS = ("reader with S3 credentials only", "wrong key", "key disabled", "key pending deletion",
              "key policy denies kms:Decrypt", "one byte flipped at rest")
MIB = 1024 * 1024


@dataclass
class Observed:
    """Everything seen for one mode; the table cells are computed from these fields."""

    title: str
    client_side: bool
    size: int
    received: int = 0  # bytes the proxy says it stores for the client (HEAD Content-Length)
    keyless: str = ""  # what a GET with S3 credentials only answered: "plaintext", "ciphertext" or an error
    user_unwraps: str = ""  # "yes" / "no (<error>)" / "" when nothing to unwrap for the user
    key_control: str = ""  # "KMS key owner" when the caller's DisableKey stopped reads
    at_rest: demolib.AtRest | None = None
    put_calls: dict[str, int] | None = field(default_factory=dict)  # None: not counted
    get_calls: dict[str, int] | None = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    put_mbps: float = 0.0
    get_mbps: float = 0.0

    # the seed's four columns, from the observations above
    def who_encrypts(self) -> str:
        return "client" if self.keyless == "ciphertext" else "server (s3proxy)"

    def key_storage(self) -> str:
        if self.user_unwraps == "yes":
            return "KMS (your key)"
        if self.keyless == "plaintext":
            return "server (s3proxy keystore)"
        return "client"

    def key_management(self) -> str:
        if self.key_control:
            return "client, through KMS"
        return "server (s3proxy)" if self.keyless == "plaintext" else "client"

    def where(self) -> str:
        return "Client" if self.received != self.size else "Server"

    def cells(self) -> tuple[str, str, str, str]:
        return self.who_encrypts(), self.key_storage(), self.key_management(), self.where()

    def evidence(self) -> tuple[str, str, str, str]:
        return (
            f"GET with S3 credentials only gave {self.keyless}",
            f"your kms:Decrypt of the stored wrapped key: {self.user_unwraps or 'no KMS key involved'}",
            f"your DisableKey: {self.failures.get('key disabled', 'n/a')}" if self.key_control
            else ("no KMS key you can see" if self.keyless == "plaintext" else "the key exists only with the client"),
            f"proxy received {self.received} bytes for {self.size} of plaintext",
        )


def calls_text(calls: dict[str, int] | None) -> str:
    if calls is None:
        return "not counted"
    return ", ".join(f"{n}× {name}" for name, n in sorted(calls.items())) or "none"


def observe(demo: demolib.Demo, mode: demolib.Mode, bucket: str, data: bytes, rounds: int, bench_size: int) -> Observed:
    key = f"{mode.label}/object.txt"
    seen = Observed(mode.title, mode.client_side, len(data))
    _, seen.put_calls = demo.kms_calls(lambda: mode.put(bucket, key, data))
    got, seen.get_calls = demo.kms_calls(lambda: mode.get(bucket, key))
    if got != data:
        raise SystemExit(f"{mode.title}: the object read back differs from what was written")
    head_args = mode.get_args()
    seen.received = demo.s3.head_object(Bucket=bucket, Key=key, **head_args)["ContentLength"]
    status, body, _ = mode.plain_get(bucket, key)
    seen.keyless = status if body is None else ("plaintext" if body == data else "ciphertext")
    seen.failures["reader with S3 credentials only"] = seen.keyless if body is not None else status
    seen.at_rest = demo.at_rest(bucket, key)
    seen.failures["wrong key"] = wrong_key(demo, mode, bucket, key)
    key_id = getattr(mode, "key_id", None)
    if key_id:
        seen.failures.update(demolib.key_failures(demo, key_id, lambda: mode.get(bucket, key)))
        seen.failures.pop("key restored")
        seen.key_control = "KMS key owner" if seen.failures["key disabled"] != "ok" else ""
    seen.user_unwraps = user_unwraps(demo, mode, bucket, key, seen)
    seen.put_mbps, seen.get_mbps = throughput(mode, bucket, f"{mode.label}/bench.bin", demolib.plaintext(bench_size), rounds)
    if demo.backend is not None:
        seen.failures["one byte flipped at rest"] = demolib.tamper_and_read(demo, mode, bucket, key, data)
    return seen


def user_unwraps(demo: demolib.Demo, mode: demolib.Mode, bucket: str, key: str, seen: Observed) -> str:
    """Can the caller unwrap the stored data key with their own kms:Decrypt? (SSE-S3: no; SSE-KMS: yes.)"""
    if isinstance(mode, demolib.Cse):
        # the client itself called kms:Decrypt on the wrapped key it stored (the audit log says who called);
        # without the audit log: the client's reads stopped when it disabled its KMS key
        if seen.get_calls is not None and any(k.startswith("client Decrypt") for k in seen.get_calls):
            return "yes"
        return "yes" if demo.audit is None and seen.failures.get("key disabled", "ok") != "ok" else ""
    meta = seen.at_rest.metadata if seen.at_rest else {}
    if "s3proxy-key" not in meta or meta.get("s3proxy-mode") == "SSE-C":
        return ""
    context = {"aws:s3:arn": f"arn:aws:s3:::{bucket}/{key}"}
    result = demolib.outcome(lambda: demo.kms.decrypt(CiphertextBlob=base64.b64decode(meta["s3proxy-key"]), EncryptionContext=context))
    return "yes" if result == "ok" else f"no ({result})"


def wrong_key(demo: demolib.Demo, mode: demolib.Mode, bucket: str, key: str) -> str:
    if isinstance(mode, demolib.SseC):
        return demolib.outcome(lambda: demolib.SseC(demo, demolib.customer_key()).get(bucket, key))
    if isinstance(mode, demolib.Cse):
        return demolib.outcome(lambda: demolib.Cse.with_local_key(demo, demolib.customer_key()).get(bucket, key))
    return "n/a (no key is sent)"


def throughput(mode: demolib.Mode, bucket: str, key: str, data: bytes, rounds: int) -> tuple[float, float]:
    put = sum(demolib.timed(lambda: mode.put(bucket, key, data)) for _ in range(rounds))
    get = sum(demolib.timed(lambda: mode.get(bucket, key)) for _ in range(rounds))
    return len(data) * rounds / put / MIB, len(data) * rounds / get / MIB


# --- report --------------------------------------------------------------------------------------


def md_table(header: tuple[str, ...] | list[str], rows: list[tuple[str, ...] | list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def at_rest_rows(results: list[Observed]) -> list[tuple[str, ...]]:
    rows = []
    for r in results:
        held = r.at_rest
        if held is None:
            rows.append((r.title, "not visible", "", "", "", ""))
            continue
        keys = ", ".join(sorted(held.metadata))
        rows.append((r.title, f"{len(held.body)} B", f"+{len(held.body) - r.size} B", f"`{held.first_bytes(8)}`", keys,
                     "**absent**" if not held.shows(demolib.plaintext(r.size)) else "**FOUND**"))
    return rows


def report_markdown(results: list[Observed], setup: str) -> str:
    parts = [
        "# How the encryption modes differ, as observed", "", setup, "",
        "## Who encrypts, who keeps the key, who manages it", "",
        md_table(("", *SEED_COLUMNS), [(r.title, *r.cells()) for r in results]), "",
        "Each cell comes from an observation:", "",
        md_table(("", *SEED_COLUMNS), [(r.title, *r.evidence()) for r in results]), "",
        "## What the backend holds", "",
        md_table(("", "stored", "overhead", "first bytes", "envelope metadata", "plaintext at rest"), at_rest_rows(results)), "",
        "## What each failure looks like to the client", "",
        md_table(("", *SITUATIONS), [(r.title, *(r.failures.get(s, "n/a") for s in SITUATIONS)) for r in results]), "",
        "## Cost", "",
        md_table(("", "PUT MiB/s", "GET MiB/s", "KMS calls per PUT", "KMS calls per GET"),
                 [(r.title, f"{r.put_mbps:.1f}", f"{r.get_mbps:.1f}", calls_text(r.put_calls), calls_text(r.get_calls)) for r in results]),
        "", "![chart](compare_modes.png)", "",
    ]
    return "\n".join(parts)


def demo_counted_by_audit(results: list[Observed]) -> bool:
    """Whether the calls say who called (the audit log's "proxy ..." / "client ..."), not /metrics' "any ..."."""
    return not any(k.startswith("any ") for r in results for k in {**(r.put_calls or {}), **(r.get_calls or {})}) \
        and all(r.put_calls is not None for r in results)


def chart(results: list[Observed], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.title for r in results]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    fig.suptitle("s3proxy: the same object under each encryption mode (observed)", fontsize=14)

    grid = axes[0][0]
    colours = {"server": "#4c72b0", "client": "#dd8452", "KMS": "#55a868"}
    columns = ("encrypts", "stores key", "manages key")
    for i, r in enumerate(results):
        for j, cell in enumerate(r.cells()[:3]):
            kind = "KMS" if "KMS" in cell else ("client" if cell.startswith("client") else "server")
            grid.add_patch(plt.Rectangle((j, len(results) - 1 - i), 0.95, 0.9, color=colours[kind]))
            grid.text(j + 0.475, len(results) - 1 - i + 0.45, cell.replace(" (", "\n("), ha="center", va="center", fontsize=8, color="white")
    grid.set_xlim(0, 3)
    grid.set_ylim(0, len(results))
    grid.set_xticks([j + 0.475 for j in range(3)], columns)
    grid.set_yticks([len(results) - 1 - i + 0.45 for i in range(len(results))], names)
    grid.tick_params(length=0)
    grid.set_frame_on(False)
    grid.set_title("who does what")

    width = 0.4
    x = range(len(results))
    tp = axes[0][1]
    tp.bar([i - width / 2 for i in x], [r.put_mbps for r in results], width, label="PUT")
    tp.bar([i + width / 2 for i in x], [r.get_mbps for r in results], width, label="GET")
    tp.set_xticks(list(x), names, rotation=15, fontsize=8)
    tp.set_ylabel("MiB/s (this machine, loopback)")
    tp.set_title("throughput")
    tp.legend()

    kc = axes[1][0]
    callers = (("proxy", "#4c72b0"), ("client", "#dd8452")) if demo_counted_by_audit(results) else (("any", "#55a868"),)
    for n_caller, (who, colour) in enumerate(callers):
        offset = (n_caller - (len(callers) - 1) / 2) * width
        puts = [sum(n for k, n in (r.put_calls or {}).items() if k.startswith(who)) for r in results]
        gets = [sum(n for k, n in (r.get_calls or {}).items() if k.startswith(who)) for r in results]
        kc.bar([i + offset for i in x], puts, width, color=colour, label=f"by the {who}: PUT (solid) / GET (hatched)")
        kc.bar([i + offset for i in x], gets, width, bottom=puts, color=colour, hatch="//", alpha=0.6)
    kc.set_xticks(list(x), names, rotation=15, fontsize=8)
    kc.set_ylabel("KMS calls for one PUT + one GET")
    kc.set_title("KMS calls (from the audit log)" if demo_counted_by_audit(results) else "KMS calls (from /metrics, or none counted)")
    kc.legend(fontsize=8)

    ov = axes[1][1]
    overhead = [len(r.at_rest.body) - r.size if r.at_rest else 0 for r in results]
    bars = ov.bar(list(x), overhead, color=["#dd8452" if r.client_side else "#4c72b0" for r in results])
    for bar, r in zip(bars, results):
        failed = sum(1 for s in SITUATIONS[1:] if r.failures.get(s, "n/a") not in ("n/a", "n/a (no key is sent)", "ok"))
        ov.annotate(f"{failed} failure case(s)\nrefused", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ov.set_xticks(list(x), names, rotation=15, fontsize=8)
    ov.set_ylabel(f"bytes at rest beyond the {results[0].size} B plaintext")
    ov.set_title("storage overhead (plaintext never found at rest)")
    ov.margins(y=0.25)

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = demolib.parser(__doc__ or "")
    p.add_argument("--out", type=Path, required=True, help="directory for compare_modes.md and compare_modes.png")
    p.add_argument("--size", type=int, default=100_000, help="bytes of the compared object (default 100000)")
    p.add_argument("--bench-size", type=int, default=4 * MIB, help="bytes per throughput round (default 4 MiB)")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds per mode (default 3)")
    args = p.parse_args(argv)
    with demolib.Demo.from_args(args) as demo:
        return compare(demo, args)


def compare(demo: demolib.Demo, args: argparse.Namespace) -> int:
    data = demolib.plaintext(args.size)
    bucket = demo.bucket("compare")
    modes: list[demolib.Mode] = [
        demolib.SseS3(demo),
        demolib.SseC(demo, demolib.customer_key()),
        demolib.SseKms(demo, demolib.new_kms_key(demo, "s3proxy demo: compare SSE-KMS")),
        demolib.Cse.with_kms(demo, demolib.new_kms_key(demo, "s3proxy demo: compare CSE")),
        demolib.Cse.with_local_key(demo, demolib.customer_key()),
    ]
    results = [observe(demo, m, bucket, data, args.rounds, args.bench_size) for m in modes]
    backend = demo.backend.describe() if demo.backend else "backend not visible"
    setup = f"Proxy {args.endpoint}; {backend}; {demo.counting}; object {args.size} B; throughput {args.rounds}× {args.bench_size} B."
    markdown = report_markdown(results, setup)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare_modes.md").write_text(markdown, encoding="utf-8")
    chart(results, args.out / "compare_modes.png")
    print(markdown)
    print(f"wrote {args.out / 'compare_modes.md'} and {args.out / 'compare_modes.png'}")
    print(json.dumps({"summary": {r.title: dict(zip(SEED_COLUMNS, r.cells())) for r in results}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
