"""One command for the whole benchmark suite: run it, write the tables and charts, update the README.

    python3 benchmarks/publish.py [--quick] [--out benchmarks/results]

Runs bench_modes.py (every mode, large and small objects, proxy against the backend reached
directly, KMS calls with and without a bucket key; with nginx installed, nginx as a plain
pass-through proxy too) and load.py (64 clients by default), then writes
OUT/RESULTS.md, OUT/throughput.png, OUT/small_ops.png, OUT/latency.png, OUT/rss.png and replaces the
block between the README's BENCHMARKS markers with the headline figures and the machine they came
from. `--quick` uses tiny sizes (for the smoke test; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
BEGIN, END = "<!-- BENCHMARKS:BEGIN -->", "<!-- BENCHMARKS:END -->"


def run(script: str, args: list[str], json_out: Path, ok: tuple[int, ...] = (0,)) -> str:
    json_out.unlink(missing_ok=True)  # a file left from an earlier run must not pass for this one's
    out = subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(json_out)],
                         capture_output=True, text=True, timeout=3600, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if out.returncode not in ok or not json_out.exists():
        raise SystemExit(f"{script} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def charts(modes: dict, load: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = modes["rows"]
    labels = [f"{r['backend']}\n{r['mode']}" for r in rows]
    files = []

    def bars(name: str, title: str, ylabel: str, series: list[tuple[str, list[float | None]]]) -> None:
        fig, ax = plt.subplots(figsize=(max(8, len(labels) * 1.1), 4.5))
        width = 0.8 / len(series)
        for i, (label, values) in enumerate(series):
            ax.bar([x + i * width for x in range(len(labels))], [v or 0 for v in values], width, label=label)
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels, fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)

    def pick(r: dict, side: str, field: str) -> float | None:
        return (r.get(side) or {}).get(field)

    bars("throughput.png", "Large-object throughput: through the proxy vs the backend direct", "MB/s", [
        ("PUT proxy", [pick(r, "proxy", "put_mbs") for r in rows]), ("PUT direct", [pick(r, "direct", "put_mbs") for r in rows]),
        ("GET proxy", [pick(r, "proxy", "get_mbs") for r in rows]), ("GET direct", [pick(r, "direct", "get_mbs") for r in rows])])
    bars("small_ops.png", "Small-object operations per second", "ops/s", [
        ("PUT proxy", [pick(r, "proxy", "small_put_ops") for r in rows]), ("PUT direct", [pick(r, "direct", "small_put_ops") for r in rows]),
        ("GET proxy", [pick(r, "proxy", "small_get_ops") for r in rows]), ("GET direct", [pick(r, "direct", "small_get_ops") for r in rows]),
        ("HEAD proxy", [pick(r, "proxy", "small_head_ops") for r in rows]), ("HEAD direct", [pick(r, "direct", "small_head_ops") for r in rows]),
        ("range GET proxy", [pick(r, "proxy", "small_range_ops") for r in rows]),
        ("range GET direct", [pick(r, "direct", "small_range_ops") for r in rows])])
    bars("rss.png", "Proxy peak RSS during the large transfers", "MiB", [("peak RSS", [pick(r, "proxy", "peak_rss_mib") for r in rows])])
    ops = [op for op in load["latency_ms"] if load["latency_ms"][op]["count"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar([x - 0.2 for x in range(len(ops))], [load["latency_ms"][o]["p50"] for o in ops], 0.4, label="p50")
    ax.bar([x + 0.2 for x in range(len(ops))], [load["latency_ms"][o]["p99"] for o in ops], 0.4, label="p99")
    ax.set_xticks(range(len(ops)), ops)
    ax.set_ylabel("ms")
    ax.set_title(f"Latency under load: {load['clients']} clients, all modes mixed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    files.append("latency.png")
    return files


def _with_ratio(r: dict, field: str) -> str:
    """A proxy figure with its ratio to direct: '812 (0.43)'."""
    v, x = r["proxy"].get(field), r.get("ratio", {}).get(field)
    return "n/a" if v is None else f"{v:.0f}" + (f" ({x:.2f})" if x else "")


def _per_op(r: dict, field: str) -> str:
    """A per-operation figure for the small PUT, GET, HEAD and range GET: '0.52 / 0.41 / 0.30 / 0.45'."""
    values = r["proxy"].get(field) or {}
    return " / ".join("n/a" if values.get(op) is None else f"{values[op]:.2f}" for op in ("put", "get", "head", "range"))


def headline(modes: dict, load: dict, stamp: str, where: str) -> str:
    lines = [f"Measured {stamp} on {where} (`python3 benchmarks/publish.py`; full tables in "
             "[benchmarks/results/RESULTS.md](benchmarks/results/RESULTS.md)).", "",
             "| backend | mode | PUT MB/s (x direct) | GET MB/s (x direct) | proxy CPU-s/GB PUT / GET | peak RSS MiB |",
             "|---|---|---|---|---|---|"]
    for r in modes["rows"]:
        p = r["proxy"]
        lines.append(f"| {r['backend']} | {r['mode']} | {_with_ratio(r, 'put_mbs')} | {_with_ratio(r, 'get_mbs')} | "
                     f"{p.get('proxy_cpu_per_gb_put') or 0:.2f} / {p.get('proxy_cpu_per_gb_get') or 0:.2f} | {p.get('peak_rss_mib') or 0:.0f} |")
    lines += ["", f"Small objects ({modes['config']['small'] // 1024} KiB, concurrency {modes['config']['concurrency']}): "
              "ops/s (x direct), the proxy's CPU milliseconds per operation, and the backend requests per operation.", "",
              "| backend | mode | PUT ops/s (x direct) | GET ops/s (x direct) | HEAD ops/s (x direct) | range GET ops/s (x direct) "
              "| proxy CPU ms PUT / GET / HEAD / range GET | backend requests per PUT / GET / HEAD / range GET |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['mode']} | {_with_ratio(r, 'small_put_ops')} | {_with_ratio(r, 'small_get_ops')} | "
              f"{_with_ratio(r, 'small_head_ops')} | {_with_ratio(r, 'small_range_ops')} | "
              f"{_per_op(r, 'proxy_ms_per_op')} | {_per_op(r, 'backend_requests_per_op')} |" for r in modes["rows"]]
    kms = modes.get("kms_calls", {})
    if kms:
        per = {k: sum(v.values()) * 1000 / max(modes.get("kms_puts", 1), 1) for k, v in kms.items()}
        lines += ["", "KMS calls per 1,000 small SSE-KMS PUTs: " + ", ".join(f"{k}: {v:.0f}" for k, v in per.items()) + "."]
    lines += ["", f"Load: {load['clients']} clients for {load['seconds']:.0f} s, all modes mixed: {load['ops_per_s']:.0f} ops/s, "
              f"p50 {load['latency_ms']['all']['p50']:.0f} ms, p99 {load['latency_ms']['all']['p99']:.0f} ms, "
              f"{load['errors']} errors, {load['bad']} bad objects of {load['objects_verified']} verified, "
              f"proxy peak RSS {load['peak_rss_mib']:.0f} MiB."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline, figures mean nothing")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of bench_modes, medians reported [5]")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    mode_args = ["--large", "2MiB", "--small-count", "20", "--kms-puts", "20", "--backends", "fs"] if args.quick else ["--repeat", str(args.repeat)]
    if not args.quick and common.nginx_path():
        mode_args.append("--reference")  # nginx in front of SeaweedFS: what any proxy hop reaches here
    load_args = ["--clients", "4", "--duration", "2"] if args.quick else []
    modes_text = run("bench_modes.py", mode_args, args.out / "modes.json")
    load_text = run("load.py", load_args, args.out / "load.json", ok=(0, 1))  # 1: load saw errors (reported)
    modes, load = json.loads((args.out / "modes.json").read_text()), json.loads((args.out / "load.json").read_text())
    pngs = charts(modes, load, args.out)
    stamp, where = dt.date.today().isoformat(), machine()
    (args.out / "RESULTS.md").write_text(
        f"# Benchmark results\n\n{stamp}, {where}.\n\n## Encryption modes (bench_modes.py)\n\n{modes_text}\n"
        f"## Load (load.py)\n\n```\n{load_text}```\n\n" + "".join(f"![{p}]({p})\n" for p in pngs))
    if not args.no_readme:
        text = args.readme.read_text()
        block = f"{BEGIN}\n{headline(modes, load, stamp, where)}\n{END}"
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S) if BEGIN in text else text + f"\n## Benchmarks\n\n{block}\n"
        args.readme.write_text(text)
    print(f"wrote {args.out / 'RESULTS.md'} and {', '.join(pngs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
