import asyncio
import threading

import numpy as np
import pytest

from ember.serve.batching import Batcher, BatchingOptions, QueueFull


class RecordingRuntime:
    """Doubles its input; refuses rows holding a negative number, as a model refusing bad input would."""

    def __init__(self):
        self.batch_rows = []
        self.threads = set()

    def run(self, inputs):
        x = inputs["x"]
        self.threads.add(threading.current_thread().name)
        self.batch_rows.append(len(x))
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2}


def run_concurrently(batcher, arrays):
    async def main():
        results = await asyncio.gather(*(batcher.submit({"x": a}, len(a)) for a in arrays), return_exceptions=True)
        batcher.close()
        return results

    return asyncio.run(main())


def test_concurrent_requests_are_merged_and_split_back():
    runtime = RecordingRuntime()
    batcher = Batcher(runtime.run, BatchingOptions(max_batch_size=8, batch_timeout_micros=50_000))
    arrays = [np.full((1, 3), i, np.float32) for i in range(8)]
    results = run_concurrently(batcher, arrays)
    assert runtime.batch_rows == [8]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], np.full((1, 3), 2 * i))
    assert all(name.startswith("ember-batch") for name in runtime.threads)  # off the event loop


def test_batches_never_exceed_max_batch_size():
    runtime = RecordingRuntime()
    batcher = Batcher(runtime.run, BatchingOptions(max_batch_size=4, batch_timeout_micros=20_000))
    results = run_concurrently(batcher, [np.ones((2, 3), np.float32)] * 5)
    assert sum(runtime.batch_rows) == 10 and max(runtime.batch_rows) <= 4
    assert all(r["y"].shape == (2, 3) for r in results)


def test_a_bad_request_in_a_batch_fails_only_itself():
    runtime = RecordingRuntime()
    batcher = Batcher(runtime.run, BatchingOptions(max_batch_size=8, batch_timeout_micros=50_000))
    arrays = [np.ones((1, 3), np.float32), -np.ones((1, 3), np.float32), np.ones((1, 3), np.float32)]
    good, bad, also_good = run_concurrently(batcher, arrays)
    assert isinstance(bad, ValueError)
    np.testing.assert_array_equal(good["y"], 2 * arrays[0])
    np.testing.assert_array_equal(also_good["y"], 2 * arrays[2])
    assert runtime.batch_rows[0] == 3  # merged first, then each request alone


def test_requests_of_other_shapes_are_not_merged():
    runtime = RecordingRuntime()
    batcher = Batcher(runtime.run, BatchingOptions(max_batch_size=8, batch_timeout_micros=50_000))
    results = run_concurrently(batcher, [np.ones((1, 3), np.float32), np.ones((1, 5), np.float32)])
    assert sorted(runtime.batch_rows) == [1, 1]
    assert [r["y"].shape for r in results] == [(1, 3), (1, 5)]


def test_a_full_queue_refuses_instead_of_growing():
    runtime = RecordingRuntime()
    batcher = Batcher(runtime.run, BatchingOptions(max_batch_size=4, max_enqueued_batches=1,
                                                   batch_timeout_micros=100_000))
    results = run_concurrently(batcher, [np.ones((3, 2), np.float32)] * 3)
    refused = [r for r in results if isinstance(r, QueueFull)]
    assert len(refused) == 2 and "queue is full" in str(refused[0])
    assert results[0]["y"].shape == (3, 2)


def test_batching_off_runs_one_request_per_call():
    runtime = RecordingRuntime()
    batcher = Batcher(runtime.run, BatchingOptions(enabled=False))
    run_concurrently(batcher, [np.ones((1, 2), np.float32)] * 4)
    assert runtime.batch_rows == [1, 1, 1, 1]


@pytest.mark.parametrize("field, value", [("max_batch_size", 0), ("batch_timeout_micros", -1),
                                          ("num_batch_threads", 1.5)])
def test_bad_options_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        BatchingOptions(**{field: value})
