"""The soak benchmark's verdict (bench/soak.py): per-minute means and what counts as flat."""

from __future__ import annotations

from typing import Any

from bench.soak import FIGURES, by_minute, flatness


def _points(values: list[float], key: str) -> list[dict[str, Any]]:
    """One sample every 30 s, two a minute, with ``values[m]`` in minute m."""
    return [{"t": m * 60 + s, key: v} for m, v in enumerate(values) for s in (0.0, 30.0)]


def test_minutes_are_means_of_their_samples() -> None:
    pts = [{"t": 0.0, "rss_mb": 100.0}, {"t": 30.0, "rss_mb": 200.0}, {"t": 60.0, "rss_mb": 50.0}]
    minutes = by_minute(pts, 120)
    assert [m["rss_mb"] for m in minutes] == [150.0, 50.0]
    assert [m["samples"] for m in minutes] == [2, 1]


def test_growth_after_the_warm_up_is_not_flat_but_the_warm_up_may_grow() -> None:
    grows = flatness(by_minute(_points([100, 500, 1000, 1050, 1100, 1200], "rss_mb"), 360), 2, 10.0)
    assert grows["rss_mb"]["flat"] is False and round(grows["rss_mb"]["max_dev_pct"]) == 20
    warm = flatness(by_minute(_points([100, 500, 1000, 1050, 1000, 1090], "rss_mb"), 360), 2, 10.0)
    assert warm["rss_mb"]["flat"] is True


def test_small_counts_move_within_their_absolute_slack() -> None:
    slack = dict((key, s) for _, key, _, s in FIGURES)["threads"]
    threads = flatness(by_minute(_points([70, 70, 20, 20 + slack, 20 - slack], "threads"), 300), 2, 10.0)
    assert threads["threads"]["flat"] is True
    threads = flatness(by_minute(_points([70, 70, 20, 21 + slack], "threads"), 240), 2, 10.0)
    assert threads["threads"]["flat"] is False
