"""`bench/rewind.py` cannot rot: a `--quick` run against a real `tracejudge run` stores its spans, rewinds them
alone and under live traffic, and reports every figure; the rewound rule ends with exactly two scores a matched
trace (`scores FINAL`), however often it was rewound. No time is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.service import REPO

pytestmark = pytest.mark.timeout(420)


def test_a_quick_rewind_benchmark_run(tmp_path: Path) -> None:
    out = tmp_path / "rewind.json"
    cmd = [sys.executable, "-m", "bench.rewind", "--quick", "--live-s", "3",
           "--tracejudge-cmd", f"{sys.executable} -m tracejudge", "--json-out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "| rewind alone |" in proc.stdout and "| with a rewind |" in proc.stdout
    r = json.loads(out.read_text())["result"]
    assert r["spans"] == 20_000 and r["traces"] == 2_000
    assert 0 < r["matched_sql"] < r["traces"] and r["dry_run"]["traces"] == r["matched_sql"]
    counts = r["alone"]["job"]["counts"]
    assert r["alone"]["state"] == "succeeded" and counts["total"] == counts["processed"] == r["traces"]
    assert counts["matched"] == r["matched_sql"] and counts["scored"] == 2 * r["matched_sql"]
    assert r["alone"]["scores_final"] == r["scores_final"] == r["scores_expected"] == 2 * r["matched_sql"]
    for phase in ("baseline", "under_load"):
        live = r[phase]
        assert live["offered_spans"] > 0 and live["accepted_spans"] > 0 and live["throttled"] >= 0
        assert live["live_scores"] > 0 and live["e2e"]["traces"] > 0, live
        assert live["e2e"]["p99_s"] >= live["e2e"]["p50_s"] > 0
    rewind = r["under_load"]["rewind"]
    assert rewind["state"] == "succeeded" and rewind["job"]["counts"]["matched"] == r["matched_sql"]
    assert "rewind" not in r["baseline"]
