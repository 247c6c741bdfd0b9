"""`bench/judges.py` cannot rot: a tiny run end to end (both phases, the fake LLM server as a subprocess, a
judge rule through the API) exits 0 and writes the report's keys; and the fake server's in-flight counter
that the benchmark reads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from tests.fakes.llm_server import FakeLLMServer
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]

SUMMARY_KEYS = {
    "sampling_rate", "sampling_basis", "ratio_accepted", "ratio_persisted", "ingest_ratio_goal_met",
    "target_in_flight", "in_flight_mean", "in_flight_max", "judge_calls_started_per_s", "judged_traces_per_s",
    "judge_rows_per_s", "judge_rows", "judge_errors", "judge_shed", "close_to_score_p50_s",
    "close_to_score_p99_s", "fake_cpu_pct",
}  # fmt: skip


def test_bench_judges_tiny_run(tmp_path: Path) -> None:
    out = tmp_path / "judges.json"
    cmd = [
        sys.executable, "-m", "bench.judges", "--duration", "6", "--baseline-duration", "3", "--rate", "1000",
        "--grpc", "1", "--http", "0", "--concurrency", "1", "--traces-per-request", "10", "--in-flight", "20",
        "--latency", "0.5", "--settle-s", "1", "--sample-interval", "2", "--close-wait", "30",
        "--stall-timeout", "15", "--drain-timeout", "30", "--json-out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    summary = doc["summary"]
    assert set(summary) >= SUMMARY_KEYS, sorted(SUMMARY_KEYS - set(summary))
    assert summary["judged_traces_per_s"] > 0 and summary["judge_rows"] > 0, summary
    assert summary["judge_errors"] == 0 and summary["in_flight_max"] > 0, summary
    assert summary["close_to_score_p99_s"] >= 0.5, summary  # at least the fake latency
    base, judging = doc["results"]
    assert base["rules"] == 0 and judging["rules"] == 1
    assert base["check"] == judging["check"] == "OK"  # judge spans are not counted as the load's spans
    assert judging["judge"]["rows"]["unique"] == judging["judge"]["rows"]["rows"]
    assert "| judging phase | value |" in proc.stdout


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return dict(json.loads(r.read()))


def test_fake_server_counts_requests_in_flight() -> None:
    with FakeLLMServer(latency=0.6) as srv:
        url = srv.base_url + "/_control/stats"

        def ask() -> None:
            req = urllib.request.Request(
                srv.openai_base_url + "/chat/completions",
                data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
                headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
            )
            urllib.request.urlopen(req, timeout=10).read()

        threads = [threading.Thread(target=ask) for _ in range(5)]
        for t in threads:
            t.start()
        eventually(lambda: _get(url)["in_flight"] >= 5, timeout=10, interval=0.05)
        assert _get(url)["in_flight"] == 5
        for t in threads:
            t.join(10)
        s = _get(url)
        assert s["in_flight"] == 0 and s["max_in_flight"] == 5 and s["requests"] == 5
        assert 5 * 0.6 * 0.9 <= s["in_flight_seconds"] <= 5 * 0.6 + 2.0  # five requests held ~0.6 s each
        req = urllib.request.Request(srv.base_url + "/_control/stats/reset", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            after = json.loads(r.read())
        assert after["requests"] == 0 and after["max_in_flight"] == 0 and after["in_flight_seconds"] == 0


def test_bench_sdk_cost_tiny_run(tmp_path: Path) -> None:
    """`bench/sdk_cost.py`: every case of every protocol makes its calls against the fake and reports a CPU cost."""
    out = tmp_path / "sdk_cost.json"
    cmd = [
        sys.executable, "-m", "bench.sdk_cost", "--concurrency", "4", "--latency", "0", "--calls", "20",
        "--warmup", "4", "--json-out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads(out.read_text())["results"]
    cases = {(r["protocol"], r["case"]) for r in results}
    protocols = ("chat_completions", "responses", "messages")
    assert cases == {(p, c) for p in protocols for c in ("judge client", "raw httpx2", "raw aiohttp")}
    assert all(r["failures"] == 0 and r["calls"] == 20 and r["cpu_ms_per_call"] > 0 for r in results)
    assert "| protocol | case | CPU ms per call |" in proc.stdout
