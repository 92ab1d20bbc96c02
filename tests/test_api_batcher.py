"""The micro-batcher on its own: batching, errors, cancellation, the queue bound."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.batcher import MicroBatcher, QueueFull
from app.metrics import Metrics


def make(run, **kw) -> tuple[MicroBatcher, ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1)
    opts = dict(max_batch=4, max_wait_s=0.05, max_queue=8, metrics=Metrics())
    opts.update(kw)
    return MicroBatcher(run, pool, **opts), pool


def test_items_announced_together_share_one_batch():
    seen: list[list[int]] = []

    def run(items):
        seen.append(list(items))
        return [i * 10 for i in items]

    async def main():
        b, pool = make(run)
        b.start()
        b.announce(3)  # three requests are decoding
        tasks = []
        for i in range(3):
            tasks.append(asyncio.ensure_future(b.submit([i], announced=1)))
            await asyncio.sleep(0.005)
        out = await asyncio.gather(*tasks)
        await b.stop()
        pool.shutdown()
        return out

    out = asyncio.run(main())
    assert [[t.result for t in r] for r in out] == [[0], [10], [20]]
    assert seen == [[0, 1, 2]]


def test_an_announced_item_that_never_comes_does_not_hold_the_batch_back():
    seen: list[list[int]] = []

    def run(items):
        seen.append(list(items))
        return items

    async def main():
        b, pool = make(run, max_wait_s=5.0)
        b.start()
        b.announce(2)  # two requests are decoding; the second one's image will turn out bad
        t0 = asyncio.get_running_loop().time()
        task = asyncio.ensure_future(b.submit([7], announced=1))
        await asyncio.sleep(0.01)
        b.withdraw(1)
        out = await task
        waited = asyncio.get_running_loop().time() - t0
        await b.stop()
        pool.shutdown()
        return out, waited

    out, waited = asyncio.run(main())
    assert [t.result for t in out] == [7] and seen == [[7]]
    assert waited < 1.0  # not the 5 s the batch would wait for an item still on its way


def test_a_failing_batch_fails_its_requests_and_the_next_batch_still_runs():
    calls = {"n": 0}

    def run(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("boom")
        return items

    async def main():
        b, pool = make(run)
        b.start()
        with pytest.raises(ValueError, match="boom"):
            await b.submit([1, 2])
        ok = await b.submit([3])
        await b.stop()
        pool.shutdown()
        return ok

    assert [t.result for t in asyncio.run(main())] == [3]


def test_queue_bound_refuses_with_a_retry_hint():
    gate = threading.Event()

    async def main():
        b, pool = make(lambda items: items, max_batch=1, max_queue=2, max_wait_s=0)
        pool.submit(gate.wait)  # the worker is busy: nothing drains
        b.start()
        first = asyncio.ensure_future(b.submit([1]))  # goes into a batch, waits for the worker
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(b.submit([2, 3]))  # fills the queue
        await asyncio.sleep(0.02)
        with pytest.raises(QueueFull) as e:
            await b.submit([4])
        assert e.value.retry_after_s > 0
        gate.set()
        await asyncio.gather(first, second)
        await b.stop()
        pool.shutdown()

    asyncio.run(main())


def test_cancelled_requests_are_not_computed():
    gate = threading.Event()
    seen: list[int] = []

    def run(items):
        seen.extend(items)
        return items

    async def main():
        b, pool = make(run, max_batch=8, max_wait_s=0)
        pool.submit(gate.wait)
        b.start()
        first = asyncio.ensure_future(b.submit([1]))
        await asyncio.sleep(0.02)
        gone = asyncio.ensure_future(b.submit([2]))  # queued behind the busy worker...
        await asyncio.sleep(0.02)
        gone.cancel()  # ...and its client goes away
        kept = asyncio.ensure_future(b.submit([3]))
        await asyncio.sleep(0.02)
        gate.set()
        await asyncio.gather(first, kept)
        await b.stop()
        pool.shutdown()

    asyncio.run(main())
    assert seen == [1, 3]


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        make(lambda items: items, max_batch=0)
