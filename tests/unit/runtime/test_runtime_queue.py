"""The work queue: each key once, never twice at the same time, urgent first, earliest timer wins; the backoff."""

from __future__ import annotations

import asyncio

import pytest

from mlops_operator.runtime.queue import Backoff, WorkQueue


def test_a_key_queued_twice_is_handed_out_once() -> None:
    async def run() -> None:
        queue = WorkQueue()
        queue.add(("team", "a"))
        queue.add(("team", "a"))
        assert queue.depth() == 1
        assert await queue.get() == ("team", "a")
        assert queue.depth() == 0

    asyncio.run(run())


def test_a_key_queued_while_running_comes_again_after_done_not_before() -> None:
    async def run() -> None:
        queue = WorkQueue()
        queue.add(("team", "a"))
        key = await queue.get()
        queue.add(key)
        assert queue.depth() == 0  # not handed to a second worker meanwhile
        queue.done(key)
        assert await asyncio.wait_for(queue.get(), 1) == key

    asyncio.run(run())


def test_urgent_keys_go_first() -> None:
    async def run() -> None:
        queue = WorkQueue()
        for name in ("a", "b", "c"):
            queue.add(("team", name))
        queue.add(("team", "c"), urgent=True)
        assert [await queue.get() for _ in range(3)] == [("team", "c"), ("team", "a"), ("team", "b")]

    asyncio.run(run())


def test_of_several_timers_for_one_key_the_earliest_stands() -> None:
    async def run() -> None:
        queue = WorkQueue()
        queue.add_after(("team", "a"), 30)
        queue.add_after(("team", "a"), 0.05)
        queue.add_after(("team", "a"), 10)
        remaining = queue.waiting_on_timer(("team", "a"))
        assert remaining is not None and remaining < 1
        assert await asyncio.wait_for(queue.get(), 1) == ("team", "a")
        queue.close()

    asyncio.run(run())


@pytest.mark.parametrize(("failures", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (20, 60.0)])
def test_backoff_doubles_up_to_its_limit(failures: int, delay: float) -> None:
    backoff = Backoff(base=1, limit=60)
    delays = [backoff.failed(("team", "a")) for _ in range(failures)]
    assert delays[-1] == delay


def test_a_success_starts_the_backoff_over_for_that_key_only() -> None:
    backoff = Backoff()
    backoff.failed(("team", "a"))
    backoff.failed(("team", "a"))
    backoff.failed(("team", "b"))
    backoff.succeeded(("team", "a"))
    assert backoff.failed(("team", "a")) == 1.0
    assert backoff.failed(("team", "b")) == 2.0
