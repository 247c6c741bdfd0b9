"""The rewind benchmark's report (``bench/rewind.py``): the goals of issue 11 checked, and a Markdown table."""

from __future__ import annotations

from typing import Any

from bench.common import fmt, markdown_table

GOAL_ALONE, GOAL_UNDER_LOAD, GOAL_INGEST, GOAL_P99_X = 10_000, 5_000, 0.95, 2.0


def goals(r: dict[str, Any]) -> dict[str, Any]:
    """Each goal: met or not (None when its figure is missing)."""
    alone, base, load = r.get("alone", {}), r.get("baseline", {}), r.get("under_load", {})
    rewind = load.get("rewind", {})
    p99, p99_base = load.get("e2e", {}).get("p99_s"), base.get("e2e", {}).get("p99_s")
    out: dict[str, Any] = {
        "alone_traces_per_s": alone.get("traces_per_s", 0) >= GOAL_ALONE if alone else None,
        "live_ingest_ratio": load.get("ingest_ratio", 0) >= GOAL_INGEST if load else None,
        "nothing_throttled": load.get("throttled") == 0 if load else None,
        "live_p99_within_2x": None if p99 is None or not p99_base else p99 <= GOAL_P99_X * p99_base,
        "rewind_under_load_traces_per_s": rewind.get("traces_per_s", 0) >= GOAL_UNDER_LOAD
        if rewind
        else None,
        "scores_once": r.get("scores_final") == r.get("scores_expected") if "scores_final" in r else None,
    }
    out["p99_ratio"] = p99 / p99_base if p99 is not None and p99_base else None
    return out


def _live_row(name: str, phase: dict[str, Any]) -> list[str]:
    e2e, rewind = phase.get("e2e", {}), phase.get("rewind", {})
    rate = "-"
    if rewind:
        ended = "" if rewind.get("ended_during_load") else " (ended after the load)"
        rate = (f"{fmt(rewind['traces_per_s'])} ({fmt(rewind.get('job_rate_per_s'))} job rate), "
                f"{rewind.get('state')}{ended}")  # fmt: skip
        if rewind.get("paused_seen"):
            rate += f", paused: {', '.join(rewind['paused_seen'])}"
    return [
        name, f"{fmt(phase.get('duration_s'), 'g')} s", fmt(phase.get("offered_spans")),
        f"{fmt(phase.get('accepted_spans'))} ({fmt(phase.get('ingest_ratio'), '.3f')})",
        str(phase.get("throttled", "-")),
        f"{fmt(e2e.get('p50_s'), '.2f')} / {fmt(e2e.get('p99_s'), '.2f')} s ({fmt(e2e.get('traces'))} traces)",
        rate,
    ]  # fmt: skip


def render(r: dict[str, Any]) -> str:
    if "alone" not in r:
        return f"ERROR: {r.get('error')}\n{r.get('server_log_tail', '')}"
    a, g = r["alone"], goals(r)
    c = a["job"].get("counts", {})
    lines = [
        f"stored: {r['traces']:,} traces ({r['spans']:,} spans) in {r['store']['send_s']:.0f} s "
        f"(+{r['store']['stored_wait_s']:.0f} s until counted); the filter matches {r['matched_sql']:,} "
        f"(SQL), dry run {r['dry_run'].get('traces', '?')}",
        "",
        markdown_table(
            ("rewind alone", "traces", "matched", "wall s", "traces/s (POST to succeeded)", "job rate_per_s",
             "score rows (scores FINAL) / expected"),
            [[a["state"], fmt(c.get("total")), fmt(c.get("matched")), fmt(a["wall_s"], ".1f"),
              fmt(a["traces_per_s"]), fmt(a["job_rate_per_s"]),
              f"{fmt(a.get('scores_final'))} / {fmt(r.get('scores_expected'))}"]],
        ),
        "",
        markdown_table(
            ("live phase", "load", "offered spans", "accepted (ratio)", "throttled", "live ingest->score p50 / p99",
             "rewind traces/s"),
            [_live_row("baseline (no rewind)", r.get("baseline", {})),
             _live_row("with a rewind", r.get("under_load", {}))],
        ),
        "",
        "goals: " + ", ".join(f"{k} {'met' if v else ('-' if v is None else 'NOT met')}"
                              for k, v in g.items() if k != "p99_ratio")
        + f"; live p99 ratio {fmt(g['p99_ratio'], '.2f')}",
    ]  # fmt: skip
    return "\n".join(lines)
