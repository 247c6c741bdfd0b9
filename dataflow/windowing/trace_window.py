"""Gathering spans into traces: the window logic, as a pure object (the clock is passed in).

A trace closes at the earliest of:
  root_settled  its root span has arrived and `settle_s` passed with no new span;
  idle_gap      no root yet, and `idle_gap_s` passed with no new span;
  max_wait      `max_wait_s` passed since its first span;
  max_spans     it holds `max_spans` spans (closed at once);
  evicted       its shard holds too many open traces and it is the oldest (counted);
  shutdown      the flow ended without recovery, so open traces are closed rather than lost.

Open traces live in a few hundred keyed shards (not one Bytewax key per trace): a shard can bound and evict,
keep timers in a heap, and remember recently closed trace ids so that a late span is recognised. A closed
trace's state is freed at once. Snapshots carry span ids only: after a restart the scoring step fetches the spans of such a trace from
ClickHouse (`Trace.complete` is False).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from dataflow.config import WindowConfig
from dataflow.model import CloseReason, Span, Trace

NS = 1_000_000_000


@dataclass
class _Window:
    spans: dict[str, Span]
    first_ns: int
    last_ns: int
    root_seen: bool
    late: bool = False
    lateness_ns: int = 0
    complete: bool = True
    version: int = 0

    def deadline(self, cfg: WindowConfig) -> tuple[int, CloseReason]:
        quiet = cfg.settle_s if self.root_seen else cfg.idle_gap_s
        by_quiet = self.last_ns + int(quiet * NS)
        by_wait = self.first_ns + int(cfg.max_wait_s * NS)
        if by_wait <= by_quiet:
            return by_wait, CloseReason.MAX_WAIT
        return by_quiet, CloseReason.ROOT_SETTLED if self.root_seen else CloseReason.IDLE_GAP


# What a shard snapshots, per open trace: (project, span ids, root span ids, first_ns, last_ns, root_seen,
# late, lateness_ns). Only ids: a resumed trace is completed from ClickHouse before it is scored, and copying every
# open span into each epoch's snapshot was the flow's largest cost after scoring itself (5,000 open traces:
# ~0.7 s of CPU and ~9 MB per snapshot with slim span copies).
ShardState = dict[str, tuple[str, tuple[str, ...], tuple[str, ...], int, int, bool, bool, int]]


def _placeholder(trace_id: str, span_id: str, root: bool, project: str) -> Span:
    """A span known only by its id (from a snapshot): scoring fills it in from ClickHouse."""
    return Span(trace_id, span_id, "" if root else "?", "", "", "", "", "", project, "", 0, 0, "", "")


@dataclass
class WindowShard:
    """The open traces of one shard."""

    config: WindowConfig
    max_open: int
    remember: int
    windows: dict[str, _Window] = field(default_factory=dict)
    _heap: list[tuple[int, str, int]] = field(default_factory=list)
    _closed: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _order: OrderedDict[str, None] = field(default_factory=OrderedDict)

    @classmethod
    def create(cls, config: WindowConfig, state: ShardState | None = None) -> WindowShard:
        shards = config.shards
        shard = cls(
            config,
            max_open=max(1, -(-config.max_open_traces // shards)),
            remember=config.remember_closed // shards if config.remember_closed else 0,
        )
        for trace_id, (project, span_ids, roots, first, last, root, late, lateness) in (state or {}).items():
            root_ids = set(roots)
            spans = {sid: _placeholder(trace_id, sid, sid in root_ids, project) for sid in span_ids}
            win = _Window(spans, first, last, root, late, lateness, complete=False)
            shard.windows[trace_id] = win
            shard._order[trace_id] = None
            shard._schedule(trace_id, win)
        return shard

    # --- input ---------------------------------------------------------------------------------------------
    def add(self, spans: Iterable[Span], now_ns: int) -> list[Trace]:
        """Add spans; return traces closed by it (max_spans, eviction)."""
        closed: list[Trace] = []
        touched: dict[str, _Window] = {}
        for span in spans:
            tid = span.trace_id
            win = self.windows.get(tid)
            if win is None:
                closed_at = self._closed.pop(tid, None)
                win = _Window({}, now_ns, now_ns, False)
                if closed_at is not None:
                    # The trace already closed once: its late spans settle like a rooted trace.
                    win.late = True
                    win.root_seen = True
                    win.lateness_ns = max(0, now_ns - closed_at)
                self.windows[tid] = win
                self._order[tid] = None
                if len(self.windows) > self.max_open:
                    closed.extend(self._evict_oldest(now_ns, keep=tid))
            win.spans[span.span_id] = span
            if span.partial:
                win.complete = False
            win.last_ns = now_ns
            win.root_seen = win.root_seen or span.is_root
            touched[tid] = win
            if len(win.spans) >= self.config.max_spans:
                closed.append(self._close(tid, CloseReason.MAX_SPANS, now_ns))
                touched.pop(tid, None)
        for tid, win in touched.items():
            if tid in self.windows:
                self._schedule(tid, win)
        return closed

    def _evict_oldest(self, now_ns: int, keep: str) -> list[Trace]:
        for tid in self._order:
            if tid != keep:
                return [self._close(tid, CloseReason.EVICTED, now_ns)]
        return []

    # --- time ----------------------------------------------------------------------------------------------
    def _schedule(self, tid: str, win: _Window) -> None:
        win.version += 1
        heapq.heappush(self._heap, (win.deadline(self.config)[0], tid, win.version))

    def next_deadline(self) -> int | None:
        heap = self._heap
        while heap:
            deadline, tid, version = heap[0]
            win = self.windows.get(tid)
            if win is not None and win.version == version:
                return deadline
            heapq.heappop(heap)  # superseded or closed
        return None

    def due(self, now_ns: int) -> list[Trace]:
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            _, tid, version = heapq.heappop(heap)
            win = self.windows.get(tid)
            if win is None or win.version != version:
                continue
            out.append(self._close(tid, win.deadline(self.config)[1], now_ns))
        return out

    def close_all(self, reason: CloseReason, now_ns: int) -> list[Trace]:
        return [self._close(tid, reason, now_ns) for tid in list(self.windows)]

    def _close(self, tid: str, reason: CloseReason, now_ns: int) -> Trace:
        win = self.windows.pop(tid)
        self._order.pop(tid, None)
        if self.remember:
            self._closed[tid] = now_ns
            if len(self._closed) > self.remember:
                self._closed.popitem(last=False)
        spans = tuple(sorted(win.spans.values(), key=lambda s: (s.start_ns, s.span_id)))
        return Trace(
            tid, spans, reason, win.first_ns, win.last_ns, now_ns, win.late, win.lateness_ns, win.complete
        )

    # --- recovery ------------------------------------------------------------------------------------------
    def snapshot(self) -> ShardState:
        return {
            tid: (
                next(iter(w.spans.values())).project if w.spans else "",
                tuple(w.spans),
                tuple(sid for sid, s in w.spans.items() if s.parent_span_id == ""),
                w.first_ns,
                w.last_ns,
                w.root_seen,
                w.late,
                w.lateness_ns,
            )
            for tid, w in self.windows.items()
        }

    @property
    def open_count(self) -> int:
        return len(self.windows)


def shard_of(trace_id: str, shards: int) -> str:
    """The shard key of a trace: trace ids are random hex, so their first 8 digits spread evenly."""
    try:
        return str(int(trace_id[:8], 16) % shards)
    except ValueError:
        return "0"
