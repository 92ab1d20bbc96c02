"""Dynamic micro-batching: concurrent requests share one forward pass.

Requests put items on a bounded queue and await one future per item. A single collector task
takes the waiting items and runs them as one batch in the torch worker thread (``executor``),
so the event loop never blocks. While a batch computes, new items queue up, so under load
batches grow by themselves.

Before running, the collector waits at most ``max_wait_s`` for more items (up to ``max_batch``),
but only for items already on their way: requests that were admitted and are still decoding
(``announce``, then ``submit(..., announced=n)`` or ``withdraw``). A lone request never waits, so concurrency 1 pays nothing for
batching; a burst is gathered into one forward pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from app.metrics import Metrics

log = logging.getLogger("airscene")

Item = TypeVar("Item")
Result = TypeVar("Result")


class QueueFull(Exception):
    """The queue holds ``max_queue`` items already. retry_after_s: a guess at when it drains."""

    def __init__(self, queued: int, retry_after_s: float) -> None:
        super().__init__(f"the inference queue is full ({queued} images waiting)")
        self.retry_after_s = retry_after_s


@dataclass
class _Job(Generic[Item]):
    item: Item
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Timed(Generic[Result]):
    """A batch result with the item's wait: queue_ms from enqueue to the batch's start."""

    result: Result
    queue_ms: float


class MicroBatcher(Generic[Item, Result]):
    """``await submit(items)`` -> their results, computed in batches by ``run_batch``.

    run_batch: list of items -> list of results, same length and order; runs in ``executor``.
        An exception it raises fails every request in that batch.
    """

    def __init__(self, run_batch: Callable[[list[Item]], list[Result]], executor: Executor, *,
                 max_batch: int, max_wait_s: float, max_queue: int, metrics: Metrics) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(f"need max_batch >= 1, max_queue >= 1, max_wait_s >= 0; got "
                             f"{max_batch}, {max_queue}, {max_wait_s}")
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._metrics = metrics
        self._pending: deque[_Job[Item]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_batch_s = 0.05  # a first guess for Retry-After, replaced by measurements
        self._arriving = 0  # admitted items not yet submitted (being decoded)

    @property
    def queued(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect(), name="airscene-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.cancel()

    def retry_after_s(self) -> float:
        """How long the current queue should take to drain, in seconds."""
        return (self.queued / self.max_batch + 1) * self._last_batch_s

    def check_room(self, n: int) -> None:
        """Raise ``QueueFull`` when ``n`` more items would not fit (cheap; call before decoding)."""
        if self.queued + n > self.max_queue:
            self._metrics.queue_rejections.inc()
            raise QueueFull(self.queued, self.retry_after_s())

    def announce(self, n: int) -> None:
        """``n`` items are on their way (admitted, being prepared): a batch may wait for them."""
        self._arriving += n

    def withdraw(self, n: int) -> None:
        """Undo ``announce`` for items that will not come (preparing them failed)."""
        self._arriving -= n
        self._wakeup.set()  # a batch waiting for these should not wait any longer

    async def submit(self, items: Sequence[Item], announced: int = 0) -> list[Timed[Result]]:
        """Queue ``items`` and wait for their results (in order). ``announced``: how many of them
        were announced; they stop counting as on their way in the same step as they are queued
        (withdrawn first, a waiting batch could wake and leave without them)."""
        self._arriving -= announced
        try:
            self.check_room(len(items))
        except QueueFull:
            self._wakeup.set()
            raise
        loop = asyncio.get_running_loop()
        jobs = [_Job(item, loop.create_future()) for item in items]
        self._pending.extend(jobs)
        self._metrics.queue_depth.set(self.queued)
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*(j.future for j in jobs)))
        except asyncio.CancelledError:
            for j in jobs:  # the client went away: don't compute for it
                j.future.cancel()
            raise

    async def _collect(self) -> None:
        while True:
            try:
                await self._collect_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop batching for good
                log.exception("micro-batcher error")

    async def _collect_once(self) -> None:
        """Wait for work, gather one batch (at most max_wait_s for more), run it."""
        loop = asyncio.get_running_loop()
        await self._wakeup.wait()
        self._wakeup.clear()
        self._drop_cancelled()
        if not self._pending:
            return
        deadline = loop.time() + self.max_wait_s
        while len(self._pending) < self.max_batch and self._arriving > 0:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                break
            self._wakeup.clear()
        self._drop_cancelled()
        batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
        self._metrics.queue_depth.set(self.queued)
        if self._pending:
            self._wakeup.set()  # more waiting: go round again at once
        if batch:
            await self._run(batch, loop)

    def _drop_cancelled(self) -> None:
        if any(j.future.done() for j in self._pending):
            self._pending = deque(j for j in self._pending if not j.future.done())

    async def _run(self, batch: list[_Job[Item]], loop: asyncio.AbstractEventLoop) -> None:
        start = time.perf_counter()
        for job in batch:
            self._metrics.queue_seconds.observe(start - job.enqueued)
        self._metrics.batch_size.observe(len(batch))
        try:
            results: list[Any] = await loop.run_in_executor(self._executor, self._run_batch, [j.item for j in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
        except Exception as e:  # noqa: BLE001 - handed to each waiting request
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        finally:
            elapsed = time.perf_counter() - start
            self._last_batch_s = elapsed
            self._metrics.compute_seconds.observe(elapsed)
        for job, result in zip(batch, results, strict=True):  # lengths checked above
            if not job.future.done():
                job.future.set_result(Timed(result, (start - job.enqueued) * 1000))
