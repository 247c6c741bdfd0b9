"""Live processes in ClickHouse: each process's heartbeat rows in `process_heartbeats` (0011), and how many
processes beat recently (the count per-rule judge budgets are split by). Both times are the server's clock, so
the hosts' clocks need not agree."""

from __future__ import annotations

from connectors.clickhouse.client import ClickHouse

_BEAT = "INSERT INTO process_heartbeats (Process, HeartbeatAt) VALUES ({p:String}, now64(6))"
_LIVE = (
    "SELECT uniqExact(Process) FROM process_heartbeats "
    "WHERE HeartbeatAt > now64(6) - toIntervalMillisecond({ms:UInt64})"
)


class HeartbeatStore:
    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch

    def beat(self, process: str) -> None:
        self._ch.command(_BEAT, {"p": process})

    def live(self, within_s: float) -> int:
        """How many processes beat in the last `within_s` seconds."""
        rows = self._ch.query_rows(_LIVE, {"ms": int(within_s * 1000)})
        return int(rows[0][0])
