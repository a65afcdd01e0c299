"""Adaptive batching: requests that arrive together share one predict call.

A model's fixed cost per call (input checks, dispatch: about 100 us for scikit-learn) dwarfs the arithmetic of a
row or two, so under concurrency the server stacks the waiting requests' rows and predicts them at once, then gives
each request its own rows of every output. A request that finds the server idle is predicted at once (after one
turn of the event loop, which lets requests that arrived with it join); one that finds others waits for the batch
being formed, which starts as soon as the requests
already being read have joined it or ``max_latency`` has passed, and holds at most ``max_rows`` rows. Requests are
batched together only when compatible: the same outputs asked for, the same inputs with the same datatypes and the
same shape after the batch dimension. Validation happens before (a bad request never reaches a batch); a batch whose
call fails is predicted again request by request, so each gets its own answer or error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Inputs = Mapping[str, npt.NDArray[Any]]
Predict = Callable[[Inputs, tuple[str, ...]], dict[str, Any]]


@dataclass
class _Waiting:
    inputs: Inputs
    outputs: tuple[str, ...]
    rows: int
    key: tuple[Any, ...]
    future: asyncio.Future[dict[str, Any]]
    since: float = field(default_factory=time.perf_counter)


def _key(inputs: Inputs, outputs: tuple[str, ...]) -> tuple[Any, ...] | None:
    """What a request must share with others to be batched with them; None when its inputs disagree on the batch
    size (it is predicted alone)."""
    sizes = {a.shape[0] if a.ndim else None for a in inputs.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    return (outputs, tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items())))


class Batcher:
    """Batches the predictions of one model; ``busy()`` says how many requests the server is handling (those being
    read included), which tells a waiting batch whether companions are on their way."""

    def __init__(self, predict: Predict, max_rows: int, max_latency: float, busy: Callable[[], int],
                 observe: Callable[[int, float], None] | None = None) -> None:  # fmt: skip
        if max_rows < 1 or max_latency < 0:
            raise ValueError("max_rows must be at least 1 and max_latency not negative")
        self.predict = predict
        self.max_rows = max_rows
        self.max_latency = max_latency
        self.busy = busy
        self.observe = observe or (lambda size, wait: None)
        self._queue: list[_Waiting] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None
        """The task forming and running batches while requests wait (held: the loop keeps only weak references)."""
        self._arrived = asyncio.Event()

    async def __call__(self, inputs: Inputs, outputs: tuple[str, ...]) -> dict[str, Any]:
        key = _key(inputs, outputs)
        rows = next(iter(inputs.values())).shape[0] if key is not None else 0
        if key is None or self.max_rows == 1 or rows >= self.max_rows:
            return self._alone(inputs, outputs)
        if not self._queue and not self._draining:
            # One turn of the event loop: the requests that arrived with this one (their handlers were started in
            # the same turn) reach this point too, and find it waiting. Alone, it is predicted right after.
            await asyncio.sleep(0)
            if not self._queue and not self._draining and self.busy() <= 1:
                return self._alone(inputs, outputs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(inputs, outputs, rows, key, future))
        self._arrived.set()
        if not self._draining:
            self._draining = True
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _alone(self, inputs: Inputs, outputs: tuple[str, ...]) -> dict[str, Any]:
        self.observe(1, 0.0)
        return self.predict(inputs, outputs)

    async def _drain(self) -> None:
        try:
            while self._queue:
                deadline = self._queue[0].since + self.max_latency
                # Companions being read join before the batch starts, within max_latency of the oldest request.
                while sum(w.rows for w in self._queue) < self.max_rows and self.busy() > len(self._queue):
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), remaining)
                    except TimeoutError:
                        break
                batch = self._take()
                self._run(batch)
                await asyncio.sleep(0)  # let the answers go out and new requests in
        finally:
            self._draining = False

    def _take(self) -> list[_Waiting]:
        """The oldest request and the compatible ones after it, up to max_rows rows."""
        first = self._queue[0]
        batch, rest, rows = [], [], 0
        for waiting in self._queue:
            if waiting.key == first.key and rows + waiting.rows <= self.max_rows:
                batch.append(waiting)
                rows += waiting.rows
            else:
                rest.append(waiting)
        self._queue = rest
        return batch

    def _run(self, batch: list[_Waiting]) -> None:
        now = time.perf_counter()
        for waiting in batch:
            self.observe(len(batch), now - waiting.since)
        if len(batch) == 1:
            self._settle(batch[0])
            return
        names = list(batch[0].inputs)
        stacked = {name: np.concatenate([w.inputs[name] for w in batch]) for name in names}
        total = sum(w.rows for w in batch)
        try:
            results = self.predict(stacked, batch[0].outputs)
            arrays = {name: np.asarray(value) for name, value in results.items()}
            if any(a.ndim == 0 or a.shape[0] != total for a in arrays.values()):
                raise ValueError("an output is not one row per input row")
        except Exception:
            # The batch as a whole failed (or its outputs cannot be split by row): each request on its own.
            for waiting in batch:
                self._settle(waiting)
            return
        start = 0
        for waiting in batch:
            end = start + waiting.rows
            if not waiting.future.done():
                waiting.future.set_result({name: a[start:end] for name, a in arrays.items()})
            start = end

    def _settle(self, waiting: _Waiting) -> None:
        try:
            result = self.predict(waiting.inputs, waiting.outputs)
        except Exception as exc:
            if not waiting.future.done():
                waiting.future.set_exception(exc)
            return
        if not waiting.future.done():
            waiting.future.set_result(result)
