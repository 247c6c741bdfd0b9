"""Rules benchmark for tracejudge (``make bench-rules``): does the flow with 50 rules keep up with ingest?

Two phases in one invocation, each against a fresh ``tracejudge run`` in a fresh temporary data dir, driven
by the ingest benchmark's load (``bench/ingest.py`` ``bench_tracejudge``, ``bench/loadgen.py`` clients):

1. **baseline**: no rules (the scoring branch builds no spans: no project has rules);
2. **rules**: ``--rules`` (50) rules created through ``POST /api/v1/rules`` before the load: trace and span
   scope, filters over input/output/name/attributes/resource/duration_ms/is_root with LIKE/ILIKE/IN/
   BETWEEN/comparisons, ``sampling_rate`` 0.1, code scorers (contains, regex, length_between, json_valid;
   levenshtein on every 10th rule).

The load generator's spans name their project in ``service.name`` (``support-bot-0``..``3``).  By default
(``--projects single``) both phases run with ``TRACEJUDGE_INGEST__PROJECT_KEYS=["deployment.environment"]``,
so every span is in project ``bench`` and every trace meets all 50 rules; ``--projects services`` keeps the
default project keys and spreads the rules over the four service projects (~12 rules per trace).

Reported per phase: accepted and persisted spans/s (as ``bench/ingest.py``), their ratio; and for the rules
phase:

* trace close latency p50/p99 minus the settle time, from the ``tracejudge_window_close_delay_seconds``
  histogram scraped from ``/metrics`` at the end (linear interpolation inside buckets, as Prometheus'
  ``histogram_quantile``), with the bucket each quantile falls in;
* ingest -> first score latency p50/p99 (minus settle) per minute of load, by SQL over a 1/``--e2e-sample``
  sample of traces: a score row's ``Timestamp`` minus its trace's ``IngestedAt`` (when the request arrived);
  it includes the log, the record source and the windows, so it shows windows falling behind;
* RSS of the service process tree every ``--sample-interval`` (5) s over the load: first vs last minute
  mean, max, least-squares slope (MB/min, +- its standard error) after the first minute, and whether that
  is flat;
* ``tracejudge_window_open_traces`` over the load (bounded?), score rows per second (``SELECT count() FROM
  scores`` every sample; do they keep arriving?), ``tracejudge_rule_decisions_total`` summed by outcome,
  scorer errors, closed windows by reason, late spans, and WARNING/ERROR lines of the service log.

"Keeps up" = rules persisted spans/s >= (1 - ``--tolerance``) x baseline; the windows close traces as fast
as they are accepted (closed traces/s x spans per trace >= (1 - tolerance) x accepted spans/s, and every
acknowledged trace closed within settle + 10 s of the load's end); open traces bounded (last-minute mean <=
1.5 x the second minute's, nothing evicted); scores arrive in every sample interval; and the ingest -> score
p99 of the last full minute is within 2 x (+1 s) that of the first.  RSS is "flat" when the last minute's
mean and the trend after the first minute (least squares, extrapolated to the end) are both within
``--flat-pct`` (5 %) above the first minute's mean.

Everything runs on 127.0.0.1, every wait is bounded, every started process is stopped (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from bench import common, ingest
from bench.common import fmt, markdown_table, summary_line
from bench.phase import Phase, phase_options, run
from bench.service import tracejudge_cmd

SINGLE_PROJECT = "bench"  # every loadgen resource has deployment.environment=bench
SERVICE_PROJECTS = tuple(f"support-bot-{i}" for i in range(4))  # loadgen's service.name values

# ---------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------

# (scope, filter, span_names, root_spans). Loadgen spans: names agent.run (root), ChatCompletion (x3),
# retrieve, embedding, tool.lookup_order, rerank, guardrail.check, format_answer; attributes
# openinference.span.kind, llm.model_name, llm.provider, llm.token_count.*, session.id, user.id,
# llm.invocation_parameters, input.mime_type; input/output 500-2000 chars of words; ~5 % errors.
SELECTORS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("trace", "input ILIKE '%refund%'", (), False),
    (
        "span",
        "name = 'ChatCompletion' AND attributes['llm.model_name'] IN ('gpt-4o-mini', 'gpt-4.1')",
        (),
        False,
    ),
    ("trace", "is_root AND duration_ms BETWEEN 5000 AND 20000", (), False),
    (
        "span",
        "attributes['openinference.span.kind'] = 'LLM' AND attributes['llm.token_count.total'] > 2500",
        (),
        False,
    ),
    ("trace", "status_code = 'Error'", (), False),
    ("span", "output NOT ILIKE '%sorry%'", ("retrieve", "rerank"), False),
    ("trace", "length(output) > 1500 AND NOT is_root", (), False),
    ("span", "attributes['llm.provider'] != 'openai' AND duration_ms < 200", (), False),
    ("span", "lower(name) LIKE 'tool.%'", (), False),
    ("trace", "", (), False),
    ("span", "attributes['user.id'] LIKE 'user-1%' OR input ILIKE '%subscription%'", (), True),
    ("trace", "attributes['missing.key'] IS NULL AND name = 'format_answer'", (), False),
    (
        "span",
        "resource['service.name'] IN ('support-bot-0', 'support-bot-2') AND duration_ms >= 1000",
        (),
        False,
    ),
    (
        "trace",
        "upper(attributes['openinference.span.kind']) IN ('TOOL', 'GUARDRAIL') AND output LIKE '%order%'",
        (),
        False,
    ),
    ("span", "", ("ChatCompletion",), False),
    ("trace", "attributes['session.id'] LIKE 'sess-9%'", (), False),
    ("span", "kind = 'Client' AND duration_ms > 1000", (), False),
    ("trace", "input LIKE 'Refund%' OR input LIKE 'Payment%' OR output ILIKE '%invoice%'", (), False),
    ("span", "is_root", (), True),
    ("trace", "attributes['llm.token_count.prompt'] < 100", (), False),
    (
        "span",
        "name <> 'embedding' AND status_code != 'Error' AND length(input) BETWEEN 600 AND 900",
        (),
        False,
    ),
    ("trace", "output ILIKE '%thanks%' AND duration_ms > 100", (), False),
    (
        "span",
        "attributes['input.mime_type'] = 'text/plain' AND NOT is_root",
        ("guardrail.check", "format_answer"),
        False,
    ),
    (
        "trace",
        "service_name LIKE 'support-bot-%' AND attributes['llm.model_name'] = 'claude-sonnet-4'",
        (),
        False,
    ),
    (
        "span",
        "name IN ('retrieve', 'embedding', 'rerank') AND attributes['user.id'] NOT IN ('user-1', 'user-2')",
        (),
        False,
    ),
)

SCORER_SETS: tuple[tuple[dict[str, Any], ...], ...] = (
    (
        {
            "name": "mentions_refund",
            "function": "contains",
            "args": {"value": "refund", "case_sensitive": False},
        },
        {"name": "sane_length", "function": "length_between", "args": {"min": 100, "max": 1800}},
    ),
    (
        {
            "name": "names_an_order",
            "function": "regex",
            "args": {"pattern": r"\b(order|invoice)\s+\w+", "ignore_case": True},
        },
    ),
    (
        {"name": "is_json", "function": "json_valid", "args": {"required_keys": ["answer"]}},
        {"name": "enough_words", "function": "length_between", "args": {"min": 50, "unit": "words"}},
    ),
    (
        {
            "name": "asks_about_payment",
            "function": "contains",
            "args": {"field": "input", "value": "payment"},
        },
        {"name": "starts_capitalised", "function": "regex", "args": {"pattern": r"^[A-Z][a-z]+\b"}},
    ),
    (
        {"name": "short_name", "function": "length_between", "args": {"field": "name", "max": 40}},
        {"name": "says_thanks", "function": "contains", "args": {"value": "thanks", "case_sensitive": False}},
        {"name": "input_json", "function": "json_valid", "args": {"field": "input"}},
    ),
)

LEVENSHTEIN = {
    "name": "close_to_reference",
    "function": "levenshtein",
    "args": {
        "expected": "Thanks for your question. Your refund for the order was approved and the payment "
        "will reach your account within five business days.",
        "threshold": 0.3,
    },
}


def make_rules(
    n: int, projects: tuple[str, ...], sampling_rate: float, levenshtein_every: int = 10
) -> list[dict[str, Any]]:
    """``n`` rules cycling through the selectors and scorer sets (deterministic)."""
    rules = []
    for i in range(n):
        scope, flt, names, root = SELECTORS[i % len(SELECTORS)]
        scorers = [{"type": "code", **s} for s in SCORER_SETS[i % len(SCORER_SETS)]]
        if levenshtein_every and i % levenshtein_every == levenshtein_every - 1:
            scorers.append({"type": "code", **LEVENSHTEIN})
        rule: dict[str, Any] = {
            "name": f"bench-{i:02d}-{scope}",
            "project": projects[i % len(projects)],
            "description": f"bench/rules.py rule {i}",
            "scope": scope,
            "filter": flt,
            "sampling_rate": sampling_rate,
            "scorers": scorers,
        }
        if scope == "span":
            rule["span_names"] = list(names)
            rule["root_spans"] = root
        rules.append(rule)
    return rules


def rules_mix(rules: list[dict[str, Any]]) -> dict[str, Any]:
    scorers: dict[str, int] = {}
    for r in rules:
        for s in r["scorers"]:
            scorers[s["function"]] = scorers.get(s["function"], 0) + 1
    return {
        "rules": len(rules),
        "trace_scope": sum(1 for r in rules if r["scope"] == "trace"),
        "span_scope": sum(1 for r in rules if r["scope"] == "span"),
        "empty_filter": sum(1 for r in rules if not r["filter"]),
        "projects": sorted({r["project"] for r in rules}),
        "scorers": scorers,
    }


def run_phase(
    args: argparse.Namespace,
    cmd: list[str],
    label: str,
    rules: list[dict[str, Any]],
    duration: float,
    env: dict[str, str],
) -> dict[str, Any]:
    return run(Phase(phase_options(args, duration), rules, duration), cmd, label, env)


# ---------------------------------------------------------------------------
# Verdict and report
# ---------------------------------------------------------------------------


def verdict(
    base: dict[str, Any] | None,
    rules: dict[str, Any],
    tolerance: float,
    spans_per_trace: int,
    settle_s: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if base and base.get("persisted_sps"):
        out["ratio_persisted"] = rules.get("persisted_sps", 0.0) / base["persisted_sps"]
        out["ratio_accepted"] = rules.get("accepted_sps", 0.0) / max(base.get("accepted_sps", 0.0), 1e-9)
        out["throughput_kept"] = out["ratio_persisted"] >= 1 - tolerance
    s = rules.get("series_summary", {})
    second, last = (
        s.get("open_traces_second_min_mean", math.nan),
        s.get("open_traces_last_min_mean", math.nan),
    )
    evicted = rules.get("closed_by_reason", {}).get("evicted", 0.0)
    out["windows_bounded"] = bool(
        evicted == 0 and (second != second or last != last or last <= 1.5 * max(second, 1.0))
    )
    out["scores_keep_arriving"] = bool(s.get("scores_arrive_every_interval"))
    windowed_sps = (s.get("traces_closed_per_s_steady") or 0.0) * spans_per_trace
    caught_up = rules.get("windows_caught_up_after_load_s")
    out["windowed_vs_accepted"] = windowed_sps / max(rules.get("accepted_sps", 0.0), 1e-9)
    out["windows_keep_up"] = bool(
        out["windowed_vs_accepted"] >= 1 - tolerance and caught_up is not None and caught_up <= settle_s + 10
    )
    by_min = [m for m in rules.get("e2e", {}).get("by_minute", []) if m["traces"] >= 50]
    full = [m for m in by_min if 0 <= m["minute"] < int(rules.get("duration_s", 0) // 60)]
    if len(full) >= 2:
        out["e2e_p99_first_vs_last_minute_s"] = [full[0]["p99_s"], full[-1]["p99_s"]]
        out["e2e_not_growing"] = full[-1]["p99_s"] <= 2 * full[0]["p99_s"] + 1.0
    keys = (
        "throughput_kept",
        "windows_bounded",
        "windows_keep_up",
        "scores_keep_arriving",
        "e2e_not_growing",
    )
    out["keeps_up"] = all(out.get(k, True) for k in keys) and "throughput_kept" in out
    out["rss_flat"] = s.get("rss_flat")
    return out


def render_tables(results: list[dict[str, Any]], summary: dict[str, Any], settle: float) -> str:
    base = next((r for r in results if r.get("rules") == 0), None)
    cols = (
        "phase",
        "duration",
        "accepted spans/s",
        "persisted spans/s",
        "vs baseline",
        "p50 / p99 request ms",
        "RSS MB first / last min (max)",
        "RSS trend after 1st min, MB/min (flat?)",
        "throttled requests",
        "loss/dup check",
    )
    rows = []
    for r in results:
        if "persisted_sps" not in r:
            rows.append([r["target"], f"{r.get('duration_s', 0):g} s", "ERROR", "-", "-", "-", "-", "-", "-",
                         str(r.get("error", ""))[:80]])  # fmt: skip
            continue
        s = r.get("series_summary", {})
        dur = f"{r['duration_s']:g} s"
        if r.get("drain_s") == r.get("drain_s") and r.get("drain_s") is not None:
            dur += f" (+{r['drain_s']:.0f} s drain)"
        ratio = "1.00" if r is base else "-"
        if base is not None and r is not base and base.get("persisted_sps"):
            ratio = f"{r['persisted_sps'] / base['persisted_sps']:.2f}"
        rows.append(
            [
                r["target"],
                dur,
                fmt(r["accepted_sps"]),
                fmt(r["persisted_sps"]),
                ratio,
                f"{fmt(r['p50_ms'], '.0f')} / {fmt(r['p99_ms'], '.0f')}",
                f"{fmt(s.get('rss_first_min_mb'))} / {fmt(s.get('rss_last_min_mb'))} ({fmt(s.get('rss_max_mb'))})",
                f"{fmt(s.get('rss_slope_after_first_min_mb_per_min'), '+.1f')} +- "
                f"{fmt(s.get('rss_slope_after_first_min_se'), '.1f')} ({'flat' if s.get('rss_flat') else 'NOT flat'})",
                str(r.get("throttled", "-")),
                r["check"],
            ]
        )
    out = [markdown_table(cols, rows)]
    rr = next((r for r in results if r.get("rules")), None)
    if rr is not None and "close_delay" in rr:
        cd, e2e, s = rr["close_delay"], rr.get("e2e", {}), rr.get("series_summary", {})
        dec = rr.get("decisions", {})
        tot = sum(dec.values()) or 1.0
        dec_s = ", ".join(
            f"{k} {v:,.0f} ({v / tot:.1%})" for k, v in sorted(dec.items(), key=lambda kv: -kv[1])
        )
        closed = sum(rr.get("closed_by_reason", {}).values())

        def bucket(key: str) -> str:
            lo, hi = cd.get(key, [math.nan, math.nan])
            return f"({lo:g}, {hi:g}]"

        cols2 = ("rules phase", "value")
        rows2 = [
            ["rules", f"{rr['rules']} ({summary.get('rules_mix', {}).get('trace_scope', '?')} trace, "
                      f"{summary.get('rules_mix', {}).get('span_scope', '?')} span scope), "
                      f"sampling {summary.get('sampling_rate')}"],
            ["trace close latency p50 / p99 - settle "
             f"({settle:g} s), histogram", f"{fmt(cd.get('p50_minus_settle_s'), '.2f')} / "
                                           f"{fmt(cd.get('p99_minus_settle_s'), '.2f')} s "
                                           f"(buckets {bucket('p50_bucket')}, {bucket('p99_bucket')} s; "
                                           f"{cd.get('count', 0):,.0f} traces)"],
            ["ingest -> first score p50 / p99 - settle (SQL, " + e2e.get("sample", "") + ")",
             f"{fmt(e2e.get('p50_minus_settle_s'), '.2f')} / {fmt(e2e.get('p99_minus_settle_s'), '.2f')} s "
             f"(max {fmt(e2e.get('max_s'), '.1f')} s, {e2e.get('traces', 0):,} traces)"],
            ["windows: traces closed per s during the load (x spans/trace = spans/s scored)",
             f"{fmt(s.get('traces_closed_per_s_steady'))} (x {summary.get('spans_per_trace', 10)} = "
             f"{fmt((s.get('traces_closed_per_s_steady') or 0) * summary.get('spans_per_trace', 10))} spans/s)"],
            ["windows caught up with ingest", f"{rr.get('traces_closed_at_end', 0):,.0f} of "
             f"{rr.get('traces_expected', 0):,} traces closed; caught up "
             f"{fmt(rr.get('windows_caught_up_after_load_s'), '.0f')} s after the load ended"],
            ["traces closed", f"{closed:,.0f} ({', '.join(f'{k} {v:,.0f}' for k, v in rr.get('closed_by_reason', {}).items())})"],
            ["open traces: max / 2nd-minute mean / last-minute mean",
             f"{fmt(s.get('open_traces_max'))} / {fmt(s.get('open_traces_second_min_mean'))} / "
             f"{fmt(s.get('open_traces_last_min_mean'))}"],
            ["score rows/s (steady, during load)", f"{fmt(s.get('score_rows_per_s_steady'))} "
             f"(min {fmt(s.get('score_rows_per_s_min_interval'))} / max {fmt(s.get('score_rows_per_s_max_interval'))} "
             f"per {summary.get('sample_interval'):g} s interval)"],
            ["score rows stored (unique)", f"{rr.get('scores_stored', 0):,} ({rr.get('scores_unique', 0):,})"],
            ["decisions by outcome", dec_s],
            ["scorer errors", f"{rr.get('scorer_errors', 0):,.0f}"],
            ["late spans / incomplete traces / rule load errors",
             f"{rr.get('late_spans', 0):,.0f} / {rr.get('incomplete_traces', 0):,.0f} / {rr.get('rule_load_errors', 0):,.0f}"],
            ["service log WARNING / ERROR / Traceback",
             " / ".join(str(rr.get("log", {}).get("counts", {}).get(k, 0)) for k in ("WARNING", "ERROR", "Traceback"))],
        ]  # fmt: skip
        out.append(markdown_table(cols2, rows2))
    return "\n\n".join(out)


def print_details(r: dict[str, Any]) -> None:
    ingest.print_details(r)
    for k in (
        "rules_created_s",
        "windows_settled_after_load_s",
        "open_traces_at_end",
        "closed_by_reason",
        "sink_inserts",
        "receiver_throttled",
        "score_rows_by_outcome",
        "scorer_error_samples",
        "monitor_errors",
    ):
        if k in r and r[k] not in ([], None, {}):
            print(f"   {k}: {r[k]}")
    if r.get("log", {}).get("samples"):
        print("   service log problems:")
        for line in r["log"]["samples"]:
            print(f"     {line}")
    s = r.get("series_summary")
    if s:
        print(
            f"   series summary: { {k: (round(v, 1) if isinstance(v, float) else v) for k, v in s.items()} }"
        )
    series = r.get("series", [])
    if series:
        print(
            "   t s | RSS MB (main) | open traces | closed | score rows | WAL backlog MB | CPU % machine (service)"
        )
        for p in series:
            print(
                f"   {p['t']:6.1f} | {fmt(p.get('rss_mb'))} ({fmt(p.get('main_rss_mb'))}) | "
                f"{fmt(p.get('open_traces'))} | {fmt(p.get('closed_traces'))} | {fmt(p.get('scores'))} | "
                f"{fmt(p.get('wal_backlog_mb'), '.1f')} | {fmt(p.get('sys_busy_pct'))} ({fmt(p.get('service_cpu_pct'))})"
            )
    prof = r.get("py_spy")
    if prof:
        print(f"   py-spy ({prof.get('samples', 0)} samples, {prof.get('file', prof.get('error'))}):")
        for title in ("threads", "flow_thread_inclusive", "flow_thread_self", "self"):
            print(f"     {title}:")
            for name, sh in prof.get(title, []):
                print(f"       {sh:6.1%}  {name}")
    e2e = r.get("e2e", {})
    if e2e.get("by_minute"):
        print("   ingest -> first score by minute of load (minute: traces, p50 / p99 / max s):")
        for m in e2e["by_minute"]:
            print(
                f"     {m['minute']}: {m['traces']:,}, {m['p50_s']:.2f} / {m['p99_s']:.2f} / {m['max_s']:.2f}"
            )
    if r.get("decisions_by_rule"):
        print("   decisions by rule (scored / filtered_out / not_targeted / sampled_out):")
        for name, d in r["decisions_by_rule"].items():
            print(
                f"     {name}: {d.get('scored', 0):,.0f} / {d.get('filtered_out', 0):,.0f} / "
                f"{d.get('not_targeted', 0):,.0f} / {d.get('sampled_out', 0):,.0f}"
            )


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_load_arguments(p, duration=300.0)
    common.add_phase_arguments(
        p, "rules", skip_help="only the rules phase", close_wait_what="windows to close"
    )
    p.add_argument("--rules", type=int, default=50, help="rules created (default 50)")
    p.add_argument(
        "--sampling-rate", type=float, default=0.1, help="every rule's sampling_rate (default 0.1)"
    )
    p.add_argument(
        "--levenshtein-every",
        type=int,
        default=10,
        help="a levenshtein scorer on every Nth rule (default 10)",
    )
    p.add_argument(
        "--projects",
        choices=("single", "services"),
        default="single",
        help="single: every span in project 'bench', all rules on every trace (default); services: the "
        "loadgen's service.name projects, rules spread over them",
    )
    p.add_argument("--tolerance", type=float, default=0.05, help="allowed throughput loss (default 0.05)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    common.interrupt_on_sigterm()
    cmd = tracejudge_cmd(args)
    env = {"TRACEJUDGE_WINDOWS__SETTLE_S": f"{args.settle_s:g}"}
    if args.projects == "single":
        env["TRACEJUDGE_INGEST__PROJECT_KEYS"] = json.dumps(["deployment.environment"])
        projects: tuple[str, ...] = (SINGLE_PROJECT,)
    else:
        projects = SERVICE_PROJECTS
    env = common.service_env(env, args.env)
    rules = make_rules(args.rules, projects, args.sampling_rate, args.levenshtein_every)
    summary: dict[str, Any] = {
        "rules_mix": rules_mix(rules),
        "sampling_rate": args.sampling_rate,
        "settle_s": args.settle_s,
        "sample_interval": args.sample_interval,
        "projects": args.projects,
        "spans_per_trace": args.spans_per_trace,
    }
    summary["tree"] = common.git_state()
    print(f"rules: {summary['rules_mix']}; tree {summary['tree']}", flush=True)
    results: list[dict[str, Any]] = []
    if not args.skip_baseline:
        base_dur = args.baseline_duration if args.baseline_duration is not None else args.duration
        results.append(run_phase(args, cmd, "baseline (no rules)", [], base_dur, env))
    results.append(run_phase(args, cmd, f"{len(rules)} rules", rules, args.duration, env))
    base = results[0] if not args.skip_baseline else None
    summary.update(verdict(base, results[-1], args.tolerance, args.spans_per_trace, args.settle_s))
    print()
    print(render_tables(results, summary, args.settle_s))
    for r in results:
        print_details(r)
    print()
    shown = {k: v for k, v in summary.items() if k != "rules_mix"}
    print(summary_line("verdict", shown))
    if args.json_out:
        common.write_json(
            args.json_out, {"argv": sys.argv, "rules": rules, "results": results, "summary": summary}
        )
    ok = all("error" not in r and r.get("check") == "OK" for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
