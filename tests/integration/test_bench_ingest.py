"""`bench/ingest.py` cannot rot: its self-test (the load generator's payloads, then whole runs of the benchmark
against the stand-in receiver of `bench/stand_in.py`, with throttling, partial success and --rate pacing)
passes, and every benchmark module answers `--help` when run as `python -m bench.<name>`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_bench_ingest_self_test() -> None:
    cmd = [sys.executable, "-m", "bench.ingest", "--self-test"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "self-test: PASSED" in proc.stdout
    assert "| stand-in |" in proc.stdout  # the report's table


@pytest.mark.parametrize(
    "module", ["ingest", "rules", "judges", "scoring", "flow", "sdk_cost", "stand_in", "peers.phoenix"]
)
def test_bench_module_runs_as_a_module(module: str) -> None:
    args = ["run", "--help"] if module == "stand_in" else ["--help"]
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
