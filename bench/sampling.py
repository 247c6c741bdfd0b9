"""Sampling a benchmarked process while the load runs.

* ``TreeSampler``: RSS and CPU time of a process and its descendants (psutil), with the peaks;
* ``thread_cpu_by_name`` / ``cpu_by_thread_delta``: CPU seconds per OS thread name (``/proc``);
* ``CountPoller``: a stored-span counter polled every second, ``wait_drained`` on it, and the persisted spans/s
  figures from its time series (``persisted_metrics``);
* ``Periodic``: the base of a sampler thread that calls ``sample()`` every ``interval`` s and keeps its
  first errors (``bench/rules.py``'s ``Monitor``, ``bench/judges.py``'s ``FlightSampler``);
* ``stop_threads``: stop the samplers still running after a failed run.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

from bench.loadgen import percentile


def thread_cpu_by_name(pid: int) -> dict[str, float]:
    """CPU seconds per OS thread name (``/proc/PID/task/*/comm``) of one process; {} if unavailable."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        except (OSError, IndexError, ValueError):
            continue
        out[name] = out.get(name, 0.0) + cpu
    return out


def _role(cmdline: list[str]) -> str:
    """A child process's role from its command line: the module of `-m`, else "spawn" (multiprocessing)."""
    if "-m" in cmdline[:-1]:
        return cmdline[cmdline.index("-m") + 1].rsplit(".", 1)[-1]
    return "spawn" if any("multiprocessing" in a for a in cmdline) else "other"


def tree_thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per ``process role/thread name`` over a process and its descendants (the root is "main");
    processes of one role (e.g. every ingest worker) are summed."""
    import psutil

    out: dict[str, float] = {f"main/{k}": v for k, v in thread_cpu_by_name(pid).items()}
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return out
    for child in children:
        try:
            role = _role(child.cmdline())
        except psutil.Error:
            continue
        for name, cpu in thread_cpu_by_name(child.pid).items():
            out[f"{role}/{name}"] = out.get(f"{role}/{name}", 0.0) + cpu
    return out


def by_process(threads: dict[str, float]) -> dict[str, float]:
    """`tree_thread_cpu` deltas summed per process role."""
    out: dict[str, float] = {}
    for key, cpu in threads.items():
        role = key.split("/", 1)[0]
        out[role] = round(out.get(role, 0.0) + cpu, 1)
    return out


def cpu_by_thread_delta(before: dict[str, float], after: dict[str, float], top: int = 8) -> dict[str, float]:
    delta = {k: round(v - before.get(k, 0.0), 1) for k, v in after.items()}
    return dict(sorted(delta.items(), key=lambda kv: -kv[1])[:top])


class TreeSampler(threading.Thread):
    """Samples RSS and CPU time of a process and its descendants (psutil)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.peak_root_rss = 0
        self.samples: list[tuple[float, int]] = []
        self.cpu_s = 0.0
        self._cpu_by_pid: dict[int, float] = {}
        self._stop_evt = threading.Event()

    def sample(self) -> None:
        ps = self.psutil
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except ps.Error:
            return
        rss = 0
        for p in procs:
            try:
                with p.oneshot():
                    m = p.memory_info().rss
                    ct = p.cpu_times()
                rss += m
                if p.pid == self.root.pid:
                    self.peak_root_rss = max(self.peak_root_rss, m)
                self._cpu_by_pid[p.pid] = ct.user + ct.system
            except ps.Error:
                continue
        self.cpu_s = sum(self._cpu_by_pid.values())
        self.peak_rss = max(self.peak_rss, rss)
        self.samples.append((time.time(), rss))

    def run(self) -> None:
        while not self._stop_evt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)
        self.sample()


class CountPoller(threading.Thread):
    """Polls a span counter every ``interval`` s; keeps (time, count, query ms)."""

    def __init__(self, count_fn: Callable[[], int], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.count_fn = count_fn
        self.interval = interval
        self.points: list[tuple[float, int, float]] = []
        self.errors: list[str] = []
        self._stop_evt = threading.Event()

    def poll_once(self) -> int | None:
        t = time.time()
        try:
            c = int(self.count_fn())
        except Exception as e:
            if len(self.errors) < 10:
                self.errors.append(f"{type(e).__name__}: {e}"[:300])
            return None
        self.points.append((t, c, (time.time() - t) * 1000))
        return c

    def run(self) -> None:
        while not self._stop_evt.is_set():
            t = time.time()
            self.poll_once()
            self._stop_evt.wait(max(0.0, self.interval - (time.time() - t)))

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=60)

    def count_at(self, t: float) -> int:
        """Last count observed at or before ``t`` (0 if none)."""
        best = 0
        for pt, c, _ in self.points:
            if pt <= t:
                best = c
        return best

    def last(self) -> int:
        return self.points[-1][1] if self.points else 0


def wait_drained(poller: CountPoller, target: int, drain_timeout: float, stall_timeout: float) -> None:
    """Keep polling until the count reaches ``target``, stops growing, or the timeout passes."""
    t_end = time.time() + drain_timeout
    last_change = time.time()
    last = poller.last()
    while time.time() < t_end:
        if last >= target:
            return
        time.sleep(1.0)
        c = poller.last()
        if c != last:
            last, last_change = c, time.time()
        elif time.time() - last_change > stall_timeout:
            return


def persisted_metrics(poller: CountPoller, t0: float, duration: float, acked: int) -> dict[str, Any]:
    """Persisted spans/s figures from the count time series (t0 = first send)."""
    pts = poller.points
    final = pts[-1][1] if pts else 0
    t_final = next((t for t, c, _ in pts if c >= final), t0 + duration) if pts else t0 + duration
    t_stop = t0 + duration
    during = poller.count_at(t_stop)
    warm = min(10.0, duration / 4)
    c_warm = poller.count_at(t0 + warm)
    qms = [q for _, _, q in pts]
    drained = final >= acked
    return {
        "persisted_final": final,
        "drained": drained,
        # all spans that became visible, per second of wall time from first send to the last increase
        "persisted_sps": final / max(t_final - t0, 1e-9),
        "persisted_sps_during_load": during / duration,
        "persisted_sps_steady": (during - c_warm) / max(duration - warm, 1e-9),
        "drain_s": max(0.0, t_final - t_stop) if drained else float("nan"),
        "visible_at_client_stop": during,
        "count_query_ms_p50": percentile(qms, 50),
        "count_query_ms_max": max(qms) if qms else float("nan"),
        "count_series": [(round(t - t0, 2), c) for t, c, _ in pts],
    }


class Periodic(threading.Thread, ABC):
    """Calls ``sample()`` every ``interval`` s from ``start_at`` (default: now) until ``stop()``; a sample's
    failure goes to ``note`` (the first 10 are kept in ``errors``)."""

    def __init__(self, interval: float, start_at: float | None = None) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.start_at = start_at
        self.errors: list[str] = []
        self._stop_evt = threading.Event()

    @abstractmethod
    def sample(self) -> None:
        """Take one sample (a subclass's work)."""

    def note(self, e: Exception) -> None:
        if len(self.errors) < 10:
            self.errors.append(f"{type(e).__name__}: {e}"[:300])

    def run(self) -> None:
        next_t = time.time() if self.start_at is None else self.start_at
        while not self._stop_evt.is_set():
            self.sample()
            next_t += self.interval
            self._stop_evt.wait(max(0.0, next_t - time.time()))

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=30)


class _Stoppable(Protocol):
    def is_alive(self) -> bool: ...

    def stop(self) -> None: ...


def stop_threads(*threads: _Stoppable | None) -> None:
    """Stop each sampler or poller that is still running (after a run that failed half-way)."""
    for t in threads:
        if t is not None and t.is_alive():
            t.stop()
