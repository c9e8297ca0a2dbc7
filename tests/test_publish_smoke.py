"""benchmarks/publish.py cannot rot: a quick run writes the tables, the charts and the README block."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def test_publish_quick_run_writes_results_charts_and_readme_block(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "publish.py"), "--quick", "--out", str(tmp_path / "r"),
                          "--readme", str(readme)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    results = (tmp_path / "r" / "RESULTS.md").read_text()
    assert "Encryption modes" in results and "Load" in results
    for png in ("throughput.png", "small_ops.png", "latency.png", "rss.png"):
        with Image.open(tmp_path / "r" / png) as image:
            assert image.size[0] > 400
    block = readme.read_text().split("<!-- BENCHMARKS:BEGIN -->")[1].split("<!-- BENCHMARKS:END -->")[0]
    assert "KMS calls per 1,000 small SSE-KMS PUTs" in block and "0 errors" in block
    assert "proxy CPU ms PUT / GET / HEAD / range GET" in block and "backend requests per PUT / GET / HEAD / range GET" in block
    assert "proxy CPU ms PUT" in results and "backend requests per PUT" in results
