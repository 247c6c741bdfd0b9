"""Acknowledged means durable: graceful stop, back-pressure, and kill -9 under load."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.integration.service import REPO, ServiceProcess, http
from tests.waiting import eventually

PB = {"Content-Type": "application/x-protobuf"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def make_request(
    n_traces: int, spans_per_trace: int = 5, text: int = 500
) -> tuple[bytes, list[tuple[str, str]]]:
    """A protobuf export with fresh ids; returns the body and its (trace id, span id) pairs."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="durability")))
    ss = rs.scope_spans.add()
    ids = []
    now = time.time_ns()
    for _ in range(n_traces):
        tid = os.urandom(16)
        for j in range(spans_per_trace):
            sid = os.urandom(8)
            span = ss.spans.add(trace_id=tid, span_id=sid, name=f"step-{j}", start_time_unix_nano=now,
                                end_time_unix_nano=now + 1000)  # fmt: skip
            span.attributes.append(KeyValue(key="input.value", value=AnyValue(string_value="q" * text)))
            span.attributes.append(KeyValue(key="output.value", value=AnyValue(string_value="a" * text)))
            ids.append((tid.hex(), sid.hex()))
    return req.SerializeToString(), ids


def count_offline(data_dir: Path) -> tuple[int, int]:
    """count() and uniqExact(TraceId, SpanId) read straight from the data dir, in a separate process."""
    code = (
        "import sys, chdb\n"
        f"c = chdb.connect({str((data_dir / 'clickhouse').resolve())!r})\n"
        "print(c.query('SELECT count(), uniqExact(TraceId, SpanId) FROM otel_traces', 'CSV'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    total, distinct = out.stdout.strip().split(",")
    return int(total), int(distinct)


def test_graceful_stop_flushes_everything_acknowledged(data_dir: Path) -> None:
    # Segments would only seal after a minute: the stop itself must seal and drain them.
    svc = ServiceProcess(data_dir, env={"TRACEJUDGE_WAL__SEGMENT_MAX_AGE_S": "60"}).start()
    sent = 0
    for _ in range(5):
        body, ids = make_request(20)
        status, _, _ = http("POST", svc.otlp_http + "/v1/traces", body, PB)
        assert status == 200
        sent += len(ids)
    assert svc.stop() == 0, svc.output
    assert count_offline(data_dir) == (sent, sent)


def test_backpressure_then_recovery(data_dir: Path) -> None:
    svc = ServiceProcess(
        data_dir,
        env={
            "TRACEJUDGE_WAL__MAX_BYTES": "1",
            "TRACEJUDGE_WAL__RETRY_AFTER_S": "1",
            "TRACEJUDGE_WAL__SEGMENT_MAX_AGE_S": "5",
            "TRACEJUDGE_WAL__RECLAIM_INTERVAL_S": "0.2",
        },
    ).start()
    try:
        first, _ = make_request(2)
        status, _, _ = http("POST", svc.otlp_http + "/v1/traces", first, PB)
        assert status == 200
        body, _ = make_request(2)  # not `first` again: a copy of an acknowledged request is answered 200
        status, headers, answer = http("POST", svc.otlp_http + "/v1/traces", body, PB)
        assert status == 429
        assert headers["retry-after"] == "1"
        assert "full" in status_pb2.Status.FromString(answer).message
        status, _, answer = http("POST", svc.api + "/api/v1/traces", body, PB)
        assert status == 429
        # a client's retry of the acknowledged request is answered as before, full log or not (nothing to store)
        assert http("POST", svc.otlp_http + "/v1/traces", first, PB)[0] == 200
        channel = grpc.insecure_channel(svc.otlp_grpc)
        export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        try:
            export(body, timeout=10)
            raise AssertionError("expected UNAVAILABLE")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            details = dict(exc.trailing_metadata())["grpc-status-details-bin"]
            status_msg = status_pb2.Status.FromString(details)
            retry = error_details_pb2.RetryInfo()
            assert status_msg.details[0].Unpack(retry)
            assert retry.retry_delay.seconds == 1
        channel.close()
        # Once the segment is sealed, stored and committed, its space is reclaimed and spans flow again.
        eventually(
            lambda: http("POST", svc.otlp_http + "/v1/traces", body, PB)[0] == 200, timeout=30, interval=0.2,
            message=lambda: svc.output,
        )  # fmt: skip
        metrics = http("GET", svc.api + "/metrics")[2].decode()
        assert 'tracejudge_receiver_requests_total{outcome="throttled",transport="http"}' in metrics
        assert (
            "tracejudge_wal_reclaimed_segments_total 1.0" in metrics or "reclaimed_segments_total" in metrics
        )
    finally:
        assert svc.stop() == 0, svc.output


class Sender:
    """Threads sending unique spans over HTTP and gRPC, remembering what was acknowledged."""

    def __init__(self, svc: ServiceProcess, threads: int = 2) -> None:
        self.svc = svc
        self.acked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Sender:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self, index: int) -> None:
        channel = grpc.insecure_channel(self.svc.otlp_grpc)
        export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        while not self._stop.is_set():
            body, ids = make_request(40)
            try:
                if index % 2:
                    export(body, timeout=10)
                else:
                    status, _, _ = http("POST", self.svc.otlp_http + "/v1/traces", body, PB, timeout=10)
                    if status != 200:
                        time.sleep(0.05)
                        continue
            except (grpc.RpcError, OSError):
                time.sleep(0.05)  # the service is down (being killed): nothing was acknowledged
                continue
            with self._lock:
                self.acked.update(ids)
        channel.close()


def test_kill_9_under_load_loses_and_duplicates_nothing(data_dir: Path) -> None:
    acked: set[tuple[str, str]] = set()
    for round_no in range(3):
        svc = ServiceProcess(data_dir).start()
        with Sender(svc) as sender:
            time.sleep(3.0)
            if round_no < 2:
                svc.kill()  # mid-stream: requests in flight, segments open, an epoch half done
        acked |= sender.acked
    # The last round stops gracefully, having replayed whatever the kills left behind.
    assert svc.stop() == 0, svc.output
    assert len(acked) > 1000
    total, distinct = count_offline(data_dir)
    print(f"acked={len(acked)} stored={total} distinct={distinct}")
    assert total == distinct, f"{total - distinct} duplicated spans"
    missing = _missing(data_dir, acked)
    assert missing == 0, f"{missing} acknowledged spans lost"


def _missing(data_dir: Path, acked: set[tuple[str, str]]) -> int:
    listing = data_dir.parent / "acked.tsv"
    listing.write_text("".join(f"{t}\t{s}\n" for t, s in sorted(acked)))
    code = (
        "import chdb\n"
        f"c = chdb.connect({str((data_dir / 'clickhouse').resolve())!r})\n"
        'print(c.query("SELECT count() FROM file(' + repr(str(listing)).replace("'", "\\'") + ", 'TSV', "
        "'t String, s String') WHERE (t, s) NOT IN (SELECT TraceId, SpanId FROM otel_traces)\", 'CSV'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())
