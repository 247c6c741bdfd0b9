"""The rewind benchmark's stored spans (``bench/rewind.py``): exactly N of the ingest benchmark's spans posted
over OTLP/HTTP (protobuf) from a few connections as fast as the service takes them (a throttled request is
sent again after its ``Retry-After``), then waited for until ``count()`` shows them all."""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from typing import Any

from bench import loadgen
from bench.service import HOST, sql_row

TEMPLATES = 20  # distinct requests of 50 traces: 1,000 distinct traces' contents
HEADERS = {"Content-Type": "application/x-protobuf"}


def _post(port: int, body: bytes, counts: dict[str, int], lock: threading.Lock) -> None:
    """Post one request until it is taken (200); throttled and failed attempts are counted and retried."""
    delay = 0.2
    for _ in range(100):
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            conn.request("POST", "/v1/traces", body, HEADERS)
            resp = conn.getresponse()
            resp.read()
            status, retry_after = resp.status, resp.getheader("Retry-After")
        except (OSError, http.client.HTTPException):
            status, retry_after = 0, None
        finally:
            conn.close()
        if status == 200:
            return
        with lock:
            counts["throttled" if status in (429, 503) else "errors"] += 1
        time.sleep(float(retry_after) if retry_after else delay)
        delay = min(2 * delay, 5.0)
    msg = f"a request was refused 100 times (last status {status})"
    raise RuntimeError(msg)


def store_spans(port: int, spans: int, threads: int, environment: str) -> dict[str, Any]:
    """Post ``spans`` spans (rounded up to whole requests of 500) into project ``environment``."""
    spec = loadgen.PayloadSpec(environment=environment)
    templates = loadgen.build_templates(spec, TEMPLATES, "protobuf")
    n_requests = -(-spans // spec.spans_per_request)
    counter = itertools.count()
    counts = {"throttled": 0, "errors": 0}
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            while (i := next(counter)) < n_requests:
                _post(port, templates[i % len(templates)].render(), counts, lock)
        except BaseException as e:  # the caller raises it
            failures.append(e)

    t0 = time.time()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise failures[0]
    wall = time.time() - t0
    sent = n_requests * spec.spans_per_request
    return {"requests": n_requests, "spans_sent": sent, "send_s": wall, "sent_sps": sent / wall, **counts}


def wait_stored(api: str, project: str, spans: int, timeout: float) -> float:
    """Seconds until ``count()`` of the project's spans reaches ``spans``; raises when it does not in time."""
    t0 = time.time()
    n = 0
    while time.time() < t0 + timeout:
        n = sql_row(api, f"SELECT count() FROM otel_traces WHERE Project = '{project}'", 60)[0]
        if n >= spans:
            return time.time() - t0
        time.sleep(1.0)
    msg = f"only {n} of {spans} spans stored after {timeout:.0f} s"
    raise RuntimeError(msg)
