import asyncio
import logging

import numpy as np
import pytest

from ember.serve.dataplane import DataPlane
from ember.serve.errors import BadRequest, InternalError
from ember.serve.runtime import InputRejected


class FailingBatcher:
    def __init__(self, error):
        self.error = error

    async def submit(self, inputs, rows):
        raise self.error


class Served:
    name, version = "m", 3

    def __init__(self, error):
        self.batcher = FailingBatcher(error)


def run(error):
    return asyncio.run(DataPlane(repository=None, metrics=None)._run(Served(error), {"x": np.ones((1, 2))}, 1))


def test_a_runtime_refusing_the_values_is_the_clients_400():
    with pytest.raises(BadRequest, match="model 'm' could not run on this input: idx=99 out of bounds"):
        run(InputRejected("idx=99 out of bounds"))


def test_any_other_runtime_failure_is_the_servers_500(caplog):
    with pytest.raises(InternalError, match="model 'm' version 3 failed: out of memory") as failed:
        run(RuntimeError("allocation\nout of memory"))
    assert failed.value.status == 500
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "model 'm' version 3 failed: out of memory (RuntimeError)"]
