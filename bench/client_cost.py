"""What a ``create_score`` call costs the application (``make bench-client-cost``): the Python client's time in
the caller's thread, with the service up and with it down.

One process, one application thread calling as fast as it can (the worst case for the client's background
thread, which shares the GIL), against the fake of ``POST /api/v1/scores`` (``tests/fakes/scores_server.py``)
in a process of its own that answers 200 (so its CPU is not counted). Cases:

* ``create_score, server up``: ``create_score(name, value, trace_id, observation_id)`` with the default client
  settings (posted every second, in batches of up to 1,000);
* ``score_current_span, server up``: the same inside an OpenTelemetry SDK span (reads the span context);
* ``create_score, server down``: the URL is a closed loopback port: the sender retries with backoff while the
  queue (10,000) fills and then drops its oldest scores;
* ``baseline``: no client, the same score validated and appended to a deque: the floor, and this machine's own
  pauses (its maximum).

The server-up cases get a queue as long as all their calls, so that what is measured is the call, not whether
the fake server keeps up with a loop that does nothing but score.

Reported per case: the wall time of one call in µs (mean, median, 99th percentile, maximum; each call timed
alone with ``perf_counter_ns``), the calls over 1 ms, the process CPU per call including the sender thread's
work (server up: until everything is delivered), and the client's counters. The goal (issue 10): under 20 µs
per call, and under 1 ms each while the service is down.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from bench.common import fmt, markdown_table, write_json
from tracejudge_client import TraceJudge, score_body, validate_score

TRACE_ID = "abcdef1234567890abcdef1234567890"
SPAN_ID = "abcdef1234567890"


def _serve(ports: Any) -> None:
    """The fake scores server's process: answer until killed."""
    import threading

    from tests.fakes.scores_server import FakeScores

    ports.put(FakeScores(record=False).start().port)
    threading.Event().wait()


@contextlib.contextmanager
def fake_server() -> Iterator[str]:
    """The fake of POST /api/v1/scores in its own process; yields its base URL."""
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    process = context.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=60)}"
    finally:
        process.kill()
        process.join(10)


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    from bench.service import free_port

    return f"http://127.0.0.1:{free_port()}"


def by_id(client: TraceJudge) -> Callable[[int], None]:
    """The call of the ``create_score`` cases."""
    return lambda i: client.create_score(
        name="quality", value=i % 10 / 10, trace_id=TRACE_ID, observation_id=SPAN_ID
    )


def current_span(client: TraceJudge) -> Callable[[int], None]:
    """The call of the ``score_current_span`` case (made inside a span)."""
    return lambda i: client.score_current_span(name="quality", value=i % 10 / 10)


# (case, its call, server up, inside a span)
CASES = [
    ("create_score, server up", by_id, True, False),
    ("score_current_span, server up", current_span, True, True),
    ("create_score, server down", by_id, False, False),
]


class Counted(Protocol):
    """What ``measure`` reads of a client."""

    @property
    def sent(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def failed(self) -> int: ...
    def flush(self, timeout_s: float | None = None) -> bool: ...


def measure(
    client: Counted, call: Callable[[int], None], calls: int, warmup: int, up: bool
) -> dict[str, Any]:
    """Time ``calls`` calls one by one after ``warmup`` untimed ones (server up: then wait for delivery)."""
    for i in range(warmup):
        call(i)
    timings = [0] * calls
    clock = time.perf_counter_ns
    cpu0 = time.process_time()
    for i in range(calls):
        t0 = clock()
        call(i)
        timings[i] = clock() - t0
    delivered = client.flush(timeout_s=60) if up else None
    cpu = time.process_time() - cpu0
    timings.sort()
    return {
        "calls": calls,
        "mean_us": statistics.fmean(timings) / 1e3,
        "p50_us": timings[calls // 2] / 1e3,
        "p99_us": timings[min(calls - 1, calls * 99 // 100)] / 1e3,
        "max_us": timings[-1] / 1e3,
        "over_1ms": sum(t > 1_000_000 for t in timings),
        "cpu_us_per_call": cpu / calls * 1e6,
        "delivered": delivered,
        "sent": client.sent,
        "dropped": client.dropped,
        "failed": client.failed,
    }


def run_cases(calls: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Every case, each with a fresh client (server down: the default queue, and a 1 s timeout so that shutdown
    gives up soon), then the baseline."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench.client_cost")
    results: dict[str, dict[str, Any]] = {}
    with fake_server() as url:
        for case, make_call, up, in_span in CASES:
            if up:  # a queue for every call: what is measured is queueing, not the fake server's pace
                client = TraceJudge(api_url=url, max_queue=calls + warmup)
            else:
                client = TraceJudge(api_url=closed_port_url(), timeout_s=1)
            with tracer.start_as_current_span("request") if in_span else contextlib.nullcontext():
                results[case] = measure(client, make_call(client), calls, warmup, up)
            client.shutdown()
    results["baseline: validate + deque.append, no client"] = baseline(calls, warmup)
    return results


def baseline(calls: int, warmup: int) -> dict[str, Any]:
    """The same call's floor without the client: the score's dict built and validated and put in a bounded
    deque, no lock, no thread. Its maximum shows this machine's own pauses (scheduling, garbage collection)."""
    queue: deque[dict[str, Any]] = deque(maxlen=10_000)

    class Floor:
        sent = dropped = failed = 0

        def flush(self, timeout_s: float | None = None) -> bool:
            return True

    def call(i: int) -> None:
        body = score_body(name="quality", value=i % 10 / 10, trace_id=TRACE_ID, observation_id=SPAN_ID)
        validate_score(body)
        queue.append(body)

    return measure(Floor(), call, calls, warmup, up=False)


COLUMNS = {
    "mean_us": ".2f", "p50_us": ".2f", "p99_us": ".2f", "max_us": ",.0f", "over_1ms": ",d",
    "cpu_us_per_call": ".2f", "sent": ",d", "dropped": ",d", "failed": ",d",
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print the table; exit status 0 when every score of the server-up cases was delivered."""
    parser = argparse.ArgumentParser(description="The Python client's cost per create_score call.")
    parser.add_argument("--calls", type=int, default=200_000, help="timed calls per case (default 200,000)")
    parser.add_argument("--warmup", type=int, default=5_000, help="untimed calls first (default 5,000)")
    parser.add_argument("--json-out", default=None, help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    results = run_cases(args.calls, args.warmup)
    rows = [
        [case, *(fmt(figures[c], spec) for c, spec in COLUMNS.items())] for case, figures in results.items()
    ]
    print(markdown_table(["case", *COLUMNS], rows))
    if args.json_out:
        write_json(args.json_out, {"args": vars(args), "results": results})
    up = [figures for case, figures in results.items() if case.endswith("server up")]
    return 0 if all(f["delivered"] and f["sent"] == f["calls"] + args.warmup for f in up) else 1


if __name__ == "__main__":
    raise SystemExit(main())
