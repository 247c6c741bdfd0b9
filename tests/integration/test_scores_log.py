"""The scores API's log end to end: a segment stored twice is stored once, and every score acknowledged before a
kill -9 is in `scores FINAL` once after the restart."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from http.client import HTTPException
from pathlib import Path

from connectors.clickhouse.client import ClickHouse
from connectors.clickhouse.scores_store import ScoreStore
from connectors.scores_log.batch import SCORES_LOG_SCHEMA
from connectors.scores_log.logged import LoggedScores
from connectors.scores_log.writer import ScoreLogWriter
from connectors.wal.log import Wal
from dataflow import metrics
from dataflow.config import ScoresLogConfig, SinkConfig
from tests.integration.service import REPO, ServiceProcess, http
from tracejudge_client.validation import validate_score


def _open(root: Path, ch: ClickHouse) -> tuple[Wal, ScoreLogWriter, LoggedScores]:
    cfg = ScoresLogConfig(segment_max_age_s=60)
    log = Wal(root, cfg.wal_config(), SCORES_LOG_SCHEMA, metrics.SCORES_LOG, "scores-log")
    store = ScoreStore(ch)
    writer = ScoreLogWriter(log, store, SinkConfig(), threading.Event())
    return log, writer, LoggedScores(log, writer, store, cfg.read_wait_s, cfg.retry_after_s)


def test_a_segment_replayed_after_a_crash_is_stored_once(chdb_client: ClickHouse, tmp_path: Path) -> None:
    root, run = tmp_path / "scores_wal", uuid.uuid4().hex
    log, writer, logged = _open(root, chdb_client)
    log.start()
    docs = [
        {
            "name": f"replay-{run}",
            "value": i,
            "session_id": run,
            **({"score_id": f"{run}-{i}"} if i % 2 else {}),
        }
        for i in range(50)
    ]
    ids = logged.write([validate_score(d) for d in docs])
    log.close()  # sealed: segment 1
    (segment,) = log.partitions[0].sealed_segments()
    kept = shutil.copy(segment[1], tmp_path / "kept.seg")
    assert writer.store_ready()
    assert not segment[1].exists()  # stored, recorded, deleted
    # A crash before the cursor was recorded: the segment is back and the cursor says nothing was stored.
    shutil.copy(kept, segment[1])
    (root / "p0" / "stored_seq").write_text("0")
    log, writer, _ = _open(root, chdb_client)
    assert writer.stored_seq == 0
    assert writer.store_ready()
    rows = chdb_client.query_rows(
        "SELECT ScoreId, Value FROM scores FINAL WHERE SessionId = {run:String} ORDER BY Value", {"run": run}
    )
    assert rows == [(i, float(n)) for n, i in enumerate(ids)]


def _post(svc: ServiceProcess, acked: set[str], stop: threading.Event) -> None:
    while not stop.is_set():
        batch = [str(uuid.uuid4()) for _ in range(20)]
        body = [{"name": "kill9", "value": 1, "session_id": "kill9", "score_id": i} for i in batch]
        try:
            status, _, _ = http(
                "POST",
                svc.api + "/api/v1/scores",
                json.dumps(body).encode(),
                {"Content-Type": "application/json"},
                timeout=10,
            )
        except (OSError, HTTPException):
            time.sleep(0.05)  # the service is down (being killed): nothing was acknowledged
            continue
        if status == 200:
            acked.update(batch)


def _stored_offline(data_dir: Path, acked: set[str]) -> tuple[int, int, int]:
    """count(), uniqExact(ScoreId) and the acknowledged ids missing, of `scores FINAL`, read from the data dir."""
    listing = data_dir.parent / "acked.txt"
    listing.write_text("".join(f"{i}\n" for i in sorted(acked)))
    code = (
        "import chdb\n"
        f"c = chdb.connect({str((data_dir / 'clickhouse').resolve())!r})\n"
        "print(c.query(\"SELECT count(), uniqExact(ScoreId) FROM scores FINAL WHERE SessionId = 'kill9'\", 'CSV'))\n"
        f"print(c.query(\"SELECT count() FROM file('{listing}', 'LineAsString', 'i String') "
        "WHERE i NOT IN (SELECT ScoreId FROM scores FINAL)\", 'CSV'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split()
    total, distinct = first.split(",")
    return int(total), int(distinct), int(second)


def test_kill_9_right_after_acknowledged_posts_loses_and_duplicates_no_score(data_dir: Path) -> None:
    acked: set[str] = set()
    for round_no in range(2):
        # Segments seal after a minute: at the kill, the acknowledged scores are in the log only.
        svc = ServiceProcess(data_dir, env={"TRACEJUDGE_SCORES_LOG__SEGMENT_MAX_AGE_S": "60"}).start()
        stop = threading.Event()
        senders = [threading.Thread(target=_post, args=(svc, acked, stop)) for _ in range(2)]
        for t in senders:
            t.start()
        time.sleep(2.0)
        if round_no == 0:
            svc.kill()
        stop.set()
        for t in senders:
            t.join(timeout=30)
    assert svc.stop() == 0, svc.output
    assert len(acked) > 100
    total, distinct, missing = _stored_offline(data_dir, acked)
    assert total == distinct, f"{total - distinct} duplicated scores"
    assert missing == 0, f"{missing} acknowledged scores lost"
