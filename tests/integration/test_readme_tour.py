"""The README's five-minute tour, run as written (only the API address is this test's own)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.integration.service import REPO, ServiceProcess
from tests.waiting import eventually

README = (REPO / "README.md").read_text(encoding="utf-8")


def tour_blocks() -> list[str]:
    tour = README.split("## Five-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", tour, flags=re.S)


def run(cmd: str, svc: ServiceProcess) -> str:
    cmd = cmd.replace("http://localhost:8080", svc.api)
    cmd = re.sub(
        r"\.venv/bin/tracejudge (sql|demo)", rf"{sys.executable} -m tracejudge \1 --api-url {svc.api}", cmd
    )
    out = subprocess.run(["bash", "-c", cmd], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (cmd, out.stdout, out.stderr)
    return out.stdout


def test_the_tour_works_as_written(tmp_path: Path) -> None:
    blocks = tour_blocks()
    demo, curl_ingest, sql_spans, _otel_env, create_rule, sql_scores = blocks
    svc = ServiceProcess(tmp_path / "data", env={"TRACEJUDGE_WINDOWS__SETTLE_S": "0.5"}).start()
    try:
        assert f"open {svc.api}/" in run(demo, svc)
        assert svc.scalar("SELECT count() FROM scores WHERE Source = 'ANNOTATION'") > 0
        assert '{"acceptedSpans":1,"rejectedSpans":0,"traces":1}' in run(curl_ingest, svc)
        eventually(
            lambda: run(sql_spans, svc), until=lambda out: "The capital of France is Paris." in out, timeout=30,
            interval=0.3,
        )  # fmt: skip
        assert '"name":"capital-questions"' in run(create_rule, svc).replace(" ", "")
        # "Send the trace of step 1 again with a new traceId".
        run(curl_ingest.replace("0af7651916cd43dd8448eb211c80319c", "1bf7651916cd43dd8448eb211c80319c"), svc)
        scores = eventually(
            lambda: run(sql_scores, svc), until=lambda out: "mentions_paris" in out, timeout=30, interval=0.3,
            message=lambda: svc.output,
        )  # fmt: skip
        assert "1bf7651916cd43dd8448eb211c80319c" in scores
    finally:
        assert svc.stop() == 0, svc.output
