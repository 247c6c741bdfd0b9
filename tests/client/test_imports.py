"""Importing the client, or the server package that re-exports it, stays light: none of the service's heavy
dependencies is imported (checked in a fresh interpreter's ``sys.modules``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("chdb", "bytewax", "pyarrow", "grpc")


@pytest.mark.parametrize("module", ["tracejudge_client", "tracejudge"])
def test_importing_does_not_import_the_heavy_dependencies(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"assert callable({module}.TraceJudge) and callable({module}.score_current_span)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "clients" / "python")]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_server_package_re_exports_the_client() -> None:
    import tracejudge
    import tracejudge_client

    for name in ("TraceJudge", "create_score", "score_current_span", "score_current_trace"):
        assert getattr(tracejudge, name) is getattr(tracejudge_client, name)
