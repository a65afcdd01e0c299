"""What the operator's API requests cost: counted by verb and outcome, timed, and the writes of the reconcile
running counted apart (for its metrics and for the closing log line)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Iterator

import httpx2
from lightkube import ApiError

from mlops_operator import metrics

# API requests this process made, by verb, and how long the latest ones took (for the closing log line and the
# benchmarks).
requests: Counter[str] = Counter()
latencies: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=10_000))


# The writes of the reconcile running in this task (and the tasks it starts): set by a reconcile, so that it can
# tell whether it wrote, whatever other reconciles do meanwhile.
writes_here: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("writes_here", default=None)
WRITE_VERBS = frozenset({"apply", "patch", "delete", "create"})


@contextlib.contextmanager
def counting_writes() -> Iterator[list[int]]:
    """Counts the successful writes made inside the block (and the tasks it starts) in the yielded list."""
    writes = [0]
    token = writes_here.set(writes)
    try:
        yield writes
    finally:
        writes_here.reset(token)


@contextlib.asynccontextmanager
async def timed(verb: str) -> AsyncIterator[None]:
    requests[verb] += 1
    started = time.monotonic()
    code = "ok"
    try:
        yield
        if verb in WRITE_VERBS and (mine := writes_here.get()) is not None:
            mine[0] += 1
    except ApiError as exc:
        code = str(exc.status.code or exc.response.status_code)
        raise
    except httpx2.HTTPStatusError as exc:
        code = str(exc.response.status_code)
        raise
    except asyncio.CancelledError:
        code = "cancelled"
        raise
    except Exception as exc:
        code = type(exc).__name__
        raise
    finally:
        took = time.monotonic() - started
        latencies[verb].append(took)
        metrics.API_REQUESTS.labels(verb, code).inc()
        metrics.API_SECONDS.labels(verb).observe(took)


def timings(values: Iterable[float]) -> str:
    """p50, p99 and max of durations in seconds, in milliseconds, for a log line."""
    ordered = sorted(values)
    if not ordered:
        return "none"
    p50, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.99))
    return f"p50 {p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms max {ordered[-1] * 1000:.0f} ms"


def latency_summary() -> str:
    """The latency of the latest requests by verb, for a log line."""
    return ", ".join(f"{verb} {timings(values)}" for verb, values in sorted(latencies.items()) if values) or "none"
