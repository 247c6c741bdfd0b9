"""The fuzz runs' size and seed: ``TJ_FUZZ_EXAMPLES`` cases per in-process test (small in ``make test``, large in
``make fuzz``) and ``TJ_FUZZ_SEED``, fixed by default so ``make test`` draws the same cases every time; the seed
and the counts are printed at the end of the run."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

SEED = int(os.environ.get("TJ_FUZZ_SEED", "20261205"))
EXAMPLES = int(os.environ.get("TJ_FUZZ_EXAMPLES", "60"))

settings.register_profile(
    "fuzz",
    max_examples=EXAMPLES,
    deadline=None,  # no wall-clock limits on a shared machine; pytest-timeout catches a hang
    database=None,  # nothing written into the working tree
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)

RAN: dict[str, int] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RAN:
        counts = ", ".join(f"{k} {v:,}" for k, v in RAN.items())
        terminalreporter.write_line(f"fuzz: hypothesis seed {SEED} (TJ_FUZZ_SEED); cases run: {counts}")
