"""Decoding in worker processes gives the very bytes in-process decoding gives; failures stay visible."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from connectors.otlp.decode import decode_json
from connectors.otlp.decode_pool import DecodePool, to_payload
from connectors.otlp.ingest import normalizer_from
from dataflow.config import IngestConfig
from dataflow.errors import DecodeError, WalError
from dataflow.model import SPAN_SCHEMA
from tests.waiting import eventually

FIXTURES = Path(__file__).resolve().parents[1] / "testdata" / "otlp"
NORM = normalizer_from(IngestConfig())


@pytest.fixture(scope="module")
def pool() -> Iterator[DecodePool]:
    p = DecodePool(1, NORM)
    p.warm_up()
    yield p
    p.close()


def test_same_bytes_as_in_process(pool: DecodePool) -> None:
    body = (FIXTURES / "reject_zero_trace_id.json").read_bytes()
    remote = pool.decode(body, "json", 42)
    local = to_payload(decode_json(body, NORM, 42))
    assert isinstance(remote.payload, bytes) and local.payload is not None
    assert remote.payload == local.payload.to_pybytes()
    assert (remote.accepted, remote.rejected, remote.traces, remote.message) == (
        local.accepted,
        local.rejected,
        local.traces,
        local.message,
    )
    batch = pa.ipc.read_record_batch(pa.py_buffer(remote.payload), SPAN_SCHEMA)
    assert batch.num_rows == 1


def test_decode_errors_cross_the_process_boundary(pool: DecodePool) -> None:
    with pytest.raises(DecodeError, match="not valid JSON"):
        pool.decode(b"{nope", "json", 1)


def test_a_dead_worker_is_replaced() -> None:
    p = DecodePool(1, NORM)
    p.warm_up()
    try:
        pid = next(iter(p._pool._processes))  # the worker's pid
        os.kill(pid, signal.SIGKILL)
        body = (FIXTURES / "json_int64_as_strings.json").read_bytes()
        with pytest.raises(WalError, match="decode worker failed"):
            for _ in range(50):  # the pool notices the death on its next use
                p.decode(body, "json", 1)
        assert p.decode(body, "json", 1).accepted == 1
    finally:
        p.close()


def test_workers_exit_when_their_service_is_killed(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "owner.py"
    script.write_text(
        "import time\n"
        "from connectors.otlp.decode_pool import DecodePool\n"
        "from connectors.otlp.ingest import normalizer_from\n"
        "from dataflow.config import IngestConfig\n"
        "if __name__ == '__main__':\n"
        "    pool = DecodePool(2, normalizer_from(IngestConfig()))\n"
        "    pool.warm_up()\n"
        "    print(' '.join(str(p) for p in pool._pool._processes), flush=True)\n"
        "    time.sleep(60)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    owner = subprocess.Popen([sys.executable, str(script)], cwd=repo, stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pids = [int(p) for p in owner.stdout.readline().split()]
    assert len(pids) == 2
    owner.kill()  # SIGKILL: the pool gets no chance to stop its workers
    owner.wait()

    def alive() -> list[int]:
        return [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]

    eventually(
        alive, until=lambda left: left == [], timeout=10, interval=0.2, message="orphaned decode workers"
    )


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"
