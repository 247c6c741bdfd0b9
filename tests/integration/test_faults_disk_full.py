"""Fault injection: the data directory's filesystem full (issue 13 item 5).

The test mounts a small tmpfs as the data directory (it needs root, as CI and this machine have; without it the
test fails, it never skips), fills it with a file, and checks: receivers answer 503 / UNAVAILABLE, nothing
acknowledged is lost, the problem is logged once (not once per request) and shown by `/readyz`, and the service
recovers by itself once the file is deleted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.integration.service import ServiceProcess, http
from tests.integration.test_durability import EXPORT, PB, make_request
from tests.waiting import eventually

DISK_SIZE = "64m"
GUARD = {
    "TRACEJUDGE_WAL__DISK_MIN_FREE_BYTES": str(4 << 20),
    "TRACEJUDGE_WAL__DISK_RESERVE_BYTES": str(16 << 20),
    "TRACEJUDGE_INGEST__DECODE_WORKERS": "0",  # decoding in-process: a faster start, the same receivers
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs (mount -t tmpfs) and must run as root, as CI does")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; return it."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_full_data_disk_refuses_then_recovers_by_itself(small_disk: Path) -> None:
    svc = ServiceProcess(small_disk / "data", env=GUARD).start()
    channel = grpc.insecure_channel(svc.otlp_grpc)
    export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    acked: list[tuple[str, str]] = []
    try:
        body, ids = make_request(10)
        assert http("POST", svc.otlp_http + "/v1/traces", body, PB)[0] == 200
        acked += ids
        filler = fill(small_disk)
        refused = 0
        for _ in range(20):
            body, ids = make_request(10)
            status, headers, _ = http("POST", svc.otlp_http + "/v1/traces", body, PB)
            if status == 200:  # the spans still fitted in a block the file system had given out
                acked += ids
                continue
            assert status == 503, status
            assert {k.lower() for k in headers} >= {"retry-after"}, headers
            refused += 1
        assert refused >= 10
        with pytest.raises(grpc.RpcError) as refused:
            export(make_request(10)[0], timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        status, _, text = http("GET", svc.api + "/readyz")
        assert status == 503 and b"No space left on device" in text, text
        filler.unlink()
        body, ids = make_request(10)
        eventually(lambda: http("POST", svc.otlp_http + "/v1/traces", body, PB)[0] == 200, timeout=60)
        acked += ids
        eventually(lambda: http("GET", svc.api + "/readyz")[0] == 200, timeout=60)
        svc.wait_for("SELECT count() FROM otel_traces", len(acked), timeout=60)
        assert svc.scalar("SELECT uniqExact(TraceId, SpanId) FROM otel_traces") == len(acked)
    finally:
        channel.close()
        code = svc.stop()
    assert code == 0, svc.output
    # Logged when it started and when it ended, not per request: by the disk guard, and by the log's writer if
    # an append passed the guard just before the disk filled.
    full = [line for line in svc.log if "No space left on device" in line]
    started = [line for line in full if " ERROR " in line]
    ended = [line for line in full if "recovered after" in line]
    assert 1 <= len(started) <= 2 and len(ended) == len(started) and len(full) == 2 * len(started), "\n".join(
        full
    )
