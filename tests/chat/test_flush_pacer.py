"""The flush pacer keeps one process's progress writes within a rate."""

from __future__ import annotations

import pytest

from zyron.chat.writer import FlushPacer


def test_few_replies_write_at_the_base_interval() -> None:
    pacer = FlushPacer(0.3, writes_per_second=200, lease_seconds=30)
    pacer.active = 60  # 60 replies every 0.3 s is 200 writes a second: the budget exactly
    assert pacer.interval() == pytest.approx(0.3)
    assert not pacer.throttled


def test_many_replies_write_less_often_to_share_the_budget() -> None:
    pacer = FlushPacer(0.3, writes_per_second=200, lease_seconds=30)
    pacer.active = 1000
    assert pacer.interval() == pytest.approx(5.0)  # 1000 replies / 200 writes a second
    assert pacer.throttled


def test_the_interval_never_outgrows_a_third_of_the_lease() -> None:
    pacer = FlushPacer(0.3, writes_per_second=10, lease_seconds=30)
    pacer.active = 10_000
    assert pacer.interval() == pytest.approx(10.0)  # the lease is still renewed in time
