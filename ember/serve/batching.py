"""Dynamic batching: concurrent requests to one model version become one runtime call.

TF Serving's parameters: up to `max_batch_size` rows are merged, waiting at most `batch_timeout_micros`
after the first request of a batch; at most `num_batch_threads` batches run at once (in threads, off
the event loop), and at most `max_enqueued_batches * max_batch_size` rows wait, beyond which `submit`
raises QueueFull (the server answers 503). Requests whose inputs differ beyond the batch dimension
(e.g. token sequences of other lengths) are merged only with their equals. If a merged call fails,
each request is run again alone, so a bad request fails only itself.
"""
import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchingOptions:
    enabled: bool = True
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 64
    num_batch_threads: int = 1

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"batching {name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.batch_timeout_micros, int) or self.batch_timeout_micros < 0:
            raise ValueError(f"batching batch_timeout_micros must be an integer >= 0, "
                             f"got {self.batch_timeout_micros!r}")


class QueueFull(Exception):
    """The bounded queue is full: the caller should answer 503 and let the client retry."""


@dataclass
class _Request:
    inputs: dict
    rows: int
    future: asyncio.Future

    def shape_key(self) -> tuple:
        return tuple((name, array.shape[1:], array.dtype.str) for name, array in self.inputs.items())


class Batcher:
    """Queue + batching loop for one runtime. Created in any thread; binds to the event loop on first use."""

    def __init__(self, run, options: BatchingOptions, on_batch=None):
        self._run = run  # dict of arrays -> dict of arrays, thread-safe
        self.options = options
        self._on_batch = on_batch or (lambda rows: None)
        self.capacity = options.max_enqueued_batches * options.max_batch_size
        self._executor = ThreadPoolExecutor(options.num_batch_threads, thread_name_prefix="ember-batch")
        self._pending = collections.deque()
        self.queued_rows = 0
        self._loop = None

    async def submit(self, inputs: dict, rows: int) -> dict:
        """Run `inputs` (arrays sharing a first dimension of `rows`) and return this request's outputs."""
        if self._loop is None:
            self._bind()
        if self.queued_rows + rows > self.capacity and self.queued_rows:
            raise QueueFull(f"the queue is full ({self.queued_rows} rows waiting, at most {self.capacity}); "
                            f"retry later")
        future = self._loop.create_future()
        self._pending.append(_Request(inputs, rows, future))
        self.queued_rows += rows
        self._arrived.set()
        if self.queued_rows >= self.options.max_batch_size:
            self._filled.set()
        return await future

    def close(self):
        """Stop the batching loop (callable from any thread); batches already running finish."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._executor.shutdown(wait=False)

    def _bind(self):
        self._loop = asyncio.get_running_loop()
        self._arrived, self._filled = asyncio.Event(), asyncio.Event()
        self._slots = asyncio.Semaphore(self.options.num_batch_threads)
        self._task = self._loop.create_task(self._batch_loop())

    async def _batch_loop(self):
        options = self.options
        timeout = options.batch_timeout_micros / 1e6 if options.enabled else 0.0
        limit = options.max_batch_size if options.enabled else 1
        while True:
            await self._arrived.wait()
            await self._slots.acquire()  # while every batch thread is busy, requests keep queueing
            started = time.perf_counter()
            while timeout and self.queued_rows < limit and (left := timeout - (time.perf_counter() - started)) > 0:
                self._filled.clear()
                try:
                    await asyncio.wait_for(self._filled.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch = self._take(limit)
            if not self._pending:
                self._arrived.clear()
            self._filled.clear()
            self._loop.create_task(self._execute(batch))

    def _take(self, limit: int) -> list:
        batch = [self._pending.popleft()]
        rows = batch[0].rows
        while self._pending and rows + self._pending[0].rows <= limit:
            request = self._pending.popleft()
            batch.append(request)
            rows += request.rows
        self.queued_rows -= rows
        return [r for r in batch if not r.future.cancelled()]  # clients that went away cost nothing

    async def _execute(self, batch: list):
        try:
            groups = collections.defaultdict(list)
            for request in batch:
                groups[request.shape_key()].append(request)
            for group in groups.values():
                results = await self._loop.run_in_executor(self._executor, self._run_group, group)
                for request, result in zip(group, results):
                    if request.future.done():
                        continue
                    if isinstance(result, BaseException):
                        request.future.set_exception(result)
                    else:
                        request.future.set_result(result)
        finally:
            self._slots.release()

    def _run_group(self, group: list) -> list:
        """In a batch thread: one merged call, split back; on failure each request alone."""
        if len(group) == 1:
            return [self._call(group[0].inputs)]
        merged = {name: np.concatenate([r.inputs[name] for r in group]) for name in group[0].inputs}
        outputs = self._call(merged)
        if isinstance(outputs, BaseException):
            return [self._call(r.inputs) for r in group]
        results, start = [], 0
        for request in group:
            stop = start + request.rows
            results.append({name: array[start:stop] for name, array in outputs.items()})
            start = stop
        return results

    def _call(self, inputs: dict):
        try:
            outputs = self._run(inputs)
        except Exception as error:  # the model's own error, reported to the request(s) that caused it
            return error
        self._on_batch(next(iter(inputs.values())).shape[0])
        return outputs
