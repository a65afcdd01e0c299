"""The work queue of a controller and the backoff of its failing keys."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from mlops_operator.runtime.kinds import Key


class WorkQueue:
    """Keys to reconcile: each key at most once in the queue, never reconciled twice at the same time; a key queued
    while it is being reconciled is reconciled again afterwards. Urgent keys (a spec not acted on yet) go before
    the others, so that a burst of status changes does not delay a new or changed object. Of several timers for
    one key, the earliest stands."""

    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue[tuple[int, int, Key]] = asyncio.PriorityQueue()
        self._pending: dict[Key, int] = {}
        self._running: set[Key] = set()
        self._again: dict[Key, int] = {}
        self._seq = 0
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self.queued_at: dict[Key, float] = {}

    def add(self, key: Key, urgent: bool = False) -> None:
        priority = 0 if urgent else 1
        if key in self._running:
            self._again[key] = min(priority, self._again.get(key, priority))
        elif self._pending.get(key, 2) > priority:
            # New, or now more urgent: an entry of its own (the older one is skipped when it comes up).
            self._pending[key] = priority
            self.queued_at.setdefault(key, time.monotonic())
            self._seq += 1
            self._queue.put_nowait((priority, self._seq, key))

    def add_after(self, key: Key, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds; of several such requests for one key only the earliest stands."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        while True:
            priority, _, key = await self._queue.get()
            if self._pending.get(key) == priority:
                break
        del self._pending[key]
        self._running.add(key)
        return key

    def depth(self) -> int:
        """Keys waiting (not counting those being reconciled or waiting on a timer)."""
        return len(self._pending)

    def waiting_on_timer(self, key: Key) -> float | None:
        """Seconds until the timer of ``key`` fires, if it has one."""
        timer = self._timers.get(key)
        if timer is None or timer.cancelled():
            return None
        return max(0.0, timer.when() - asyncio.get_running_loop().time())

    def done(self, key: Key) -> None:
        self._running.discard(key)
        self.queued_at.pop(key, None)
        if key in self._again:
            self.add(key, urgent=self._again.pop(key) == 0)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class Backoff:
    """The delay before a failed key is tried again: ``base`` doubling with each failure in a row, at most
    ``limit``; a success starts it over. The one backoff of every controller."""

    def __init__(self, base: float = 1.0, limit: float = 60.0) -> None:
        self.base, self.limit = base, limit
        self._failures: Counter[Key] = Counter()

    def failed(self, key: Key) -> float:
        self._failures[key] += 1
        return float(min(self.limit, self.base * 2 ** (self._failures[key] - 1)))

    def succeeded(self, key: Key) -> None:
        self._failures.pop(key, None)

    def failures(self, key: Key) -> int:
        return self._failures[key]
