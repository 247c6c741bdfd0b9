"""A start-up that fails late stops everything it had started: the CLI exits 2 and leaves nothing running."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.integration.service import REPO


def test_a_start_failing_after_the_flow_started_stops_what_it_started(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "tests.integration.failed_start", str(tmp_path / "data"),
             str(taken.getsockname()[1])],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["code"] == 2, proc.stderr
    assert "start-up failed: cannot bind OTLP/gRPC" in proc.stderr
    # the HTTP servers, the flow, the log writers, the span store, the judge loop, the reloaders, the status
    # writer: all ended
    assert report["threads"] == [], proc.stderr
    assert report["children"] == [], "the decode pool's workers (or the recovery reader) are still running"
    assert report["open_files"] == []
    assert report["ports_free"], "the HTTP ports claimed first were not released"
