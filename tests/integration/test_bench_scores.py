"""`bench/scores.py` cannot rot: a short run against a real `tracejudge run` stores every accepted score exactly
once and reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.service import REPO

pytestmark = pytest.mark.timeout(300)


def test_a_short_scores_benchmark_run(tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    cmd = [sys.executable, "-m", "bench.scores", "--duration", "2", "--clients", "2", "--batch", "50",
           "--tracejudge-cmd", f"{sys.executable} -m tracejudge", "--json-out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "| 2 x 1 conn, 50/request |" in proc.stdout
    result = json.loads(out.read_text())["result"]
    assert result["accepted"] > 0 and result["refused"] == {}
    assert result["stored"] == result["stored_unique"] == result["accepted"] == result["sent"]
    assert result["exactly_once"] is True
