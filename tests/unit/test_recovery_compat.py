"""A recovery store written before the judge step and the judge client interface moved still resumes: its
snapshot names the old module paths, which dataflow.flow aliases (pickle finds a class by module and name)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import dataflow.flow  # noqa: F401  (the aliases are made when the flow module is imported)
from dataflow.judging.client import JudgeRequest
from dataflow.judging.judge import LlmJudgeSpec
from dataflow.scoring.judge_step import JudgeJob

OLD_PATHS = {
    b"dataflow.scoring.judge_step": b"dataflow.judging.step",
    b"dataflow.judging.client": b"connectors.llm.base",
}


def old_snapshot() -> tuple[list[JudgeJob], bytes]:
    """A judge step snapshot (pending jobs) as the old code pickled it: the same bytes, the old module paths."""
    spec = LlmJudgeSpec(name="helpful", connection="openai", criteria="Is it helpful?")
    job = JudgeJob(
        score_id="s" * 32, project="p", trace_id="a" * 32, span_id="", session_id="", subject_span_id="1" * 16,
        rule_id="r1", rule_name="rule", rule_version=3, max_calls_per_minute=0.0, max_usd_per_hour=0.0, spec=spec,
        request=JudgeRequest(system="sys", prompt="prompt", choices=("a",), params={"t": 1}),
        trace_start_ns=5, close_reason="root_settled",
    )  # fmt: skip
    data = pickle.dumps(
        [job], protocol=0
    )  # text protocol: module paths are plain lines, so they can be renamed
    for new, old in OLD_PATHS.items():
        assert b"c" + new + b"\n" in data
        data = data.replace(b"c" + new + b"\n", b"c" + old + b"\n")
    return [job], data


def test_an_old_judge_snapshot_loads_as_the_same_jobs() -> None:
    jobs, data = old_snapshot()
    assert pickle.loads(data) == jobs


def test_without_the_aliases_it_would_not() -> None:
    _, data = old_snapshot()
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    done = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=False)
    assert done.returncode != 0 and b"No module named 'dataflow.judging.step'" in done.stderr
