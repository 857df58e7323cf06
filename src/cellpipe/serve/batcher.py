"""Micro-batching: concurrent requests share one forward pass.

Requests wait in a bounded queue; one consumer takes the first, then whatever else arrives within
``max_wait_s`` up to ``max_batch`` samples, and runs the model once on all of them in a worker
thread (the event loop keeps accepting connections meanwhile). A full queue sheds the request at
once (``Overloaded``: the service answers 503) instead of letting clients pile up. A batch that
fails is retried request by request, so one bad sample fails only its own request.
"""
import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List

log = logging.getLogger("serve")


class Overloaded(Exception):
    """The queue is full: the request is shed."""


class MicroBatcher:
    """``predict(samples: {id: sample}) -> {id: answer}`` applied to merged requests."""

    def __init__(self, predict: Callable[[Dict], Dict], max_batch: int, max_wait_s: float, max_queue: int):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch and max_queue must be >= 1 and max_wait_s >= 0, got "
                             f"{max_batch}, {max_queue}, {max_wait_s}")
        self.predict, self.max_batch, self.max_wait_s = predict, int(max_batch), float(max_wait_s)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=int(max_queue))
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.task = None
        self.batches = 0  # forward passes run (for /health and the load benchmark)
        self.samples = 0
        self.shed = 0

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._consume())
        self.task.add_done_callback(self._consumer_ended)

    def _consumer_ended(self, task) -> None:
        # the consumer only ends when stopped; should it die, nobody waits forever for it
        if not task.cancelled() and task.exception() is not None:
            log.error("the batching loop died: %r", task.exception())
        self._fail_queued(RuntimeError("the service is stopping or its batching loop has died"))

    def _fail_queued(self, error: Exception) -> None:
        while not self.queue.empty():
            _, future = self.queue.get_nowait()
            if not future.done():
                future.set_exception(error)

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self._fail_queued(RuntimeError("the service is stopping"))
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, samples: Dict) -> Dict:
        """The answers of ``samples`` (ids unique across requests: the caller prefixes them)."""
        if self.task is not None and self.task.done():
            raise RuntimeError("the batching loop is not running")
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((samples, future))
        except asyncio.QueueFull:
            self.shed += 1
            raise Overloaded(f"the queue holds {self.queue.maxsize} request(s) already") from None
        return await future

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n = len(items[0][0])
            deadline = loop.time() + self.max_wait_s
            while n < self.max_batch:
                try:  # take what is already queued, then wait for more until the deadline
                    item = self.queue.get_nowait() if not self.queue.empty() else \
                        await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                items.append(item)
                n += len(item[0])
            items = [(s, f) for s, f in items if not f.done()]  # a client that left took its future
            if items:
                await self._run(loop, items)

    async def _run(self, loop, items: List) -> None:
        merged = {k: v for samples, _ in items for k, v in samples.items()}
        try:
            answers = await loop.run_in_executor(self.executor, self.predict, merged)
            self.batches += 1
            self.samples += len(merged)
            for samples, future in items:
                if not future.done():
                    future.set_result({k: answers[k] for k in samples})
        except Exception as e:  # noqa: BLE001 - retried alone, so only the culprit's request fails
            if len(items) == 1:
                if not items[0][1].done():
                    items[0][1].set_exception(e)
                return
            log.warning("a batch of %d requests failed (%s); retrying them one by one", len(items), e)
            for item in items:
                await self._run(loop, [item])
