"""`bench/ui.py` cannot rot: a --quick run against a real `tracejudge run` loads its spans and the demo, then
times every page the service serves (the traces page at least)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.service import REPO
from tracejudge.demo_data import build

pytestmark = pytest.mark.timeout(400)


def test_a_quick_ui_benchmark_run(tmp_path: Path) -> None:
    out = tmp_path / "ui.json"
    cmd = [sys.executable, "-m", "bench.ui", "--quick", "--tracejudge-cmd", f"{sys.executable} -m tracejudge",
           "--json-out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())["result"]
    assert result["spans"] == 20_000 + build(1, 0).spans  # the loadgen's and the demo's
    timed = {p["path"]: p for p in result["pages"] if p["status"] == 200}
    assert "/traces" in timed and timed["/traces"]["n"] == 5
    assert all(0 < p["p50_ms"] <= p["p99_ms"] for p in timed.values())
    assert all(p["status"] in (200, 404) for p in result["pages"]), result["pages"]
