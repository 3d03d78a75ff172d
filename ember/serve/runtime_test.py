import numpy as np
import pytest

from ember.serve.runtime import InputRejected, load_runtime
from ember.signature import load_signature
from testing.serve import exported


def text_runtime():
    return load_runtime(exported("text"), load_signature(exported("text")))


def test_a_model_failing_on_the_inputs_values_rejects_the_input():
    ids = np.array([[2, 99]], np.int64)  # 99: past the 10-word vocabulary
    with pytest.raises(InputRejected, match="indices element out of data bounds"):
        text_runtime().run({"input_ids": ids, "attention_mask": np.ones_like(ids)})


def test_a_torch_program_failing_on_the_inputs_values_rejects_the_input():
    tiny = load_runtime(exported("tiny"), load_signature(exported("tiny")), "torch")
    with pytest.raises(InputRejected, match="Guard failed"):
        tiny.run({"input": np.ones((70_000, 4), np.float32)})  # the program takes at most 65536 rows


def test_running_out_of_memory_is_the_servers_failure(monkeypatch):
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    runtime = text_runtime()

    def out_of_memory(*args):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : Failed to allocate memory for requested buffer of size 2**40")

    monkeypatch.setattr(runtime._session, "run", out_of_memory)
    ids = np.ones((1, 2), np.int64)
    with pytest.raises(Fail, match="Failed to allocate memory"):
        runtime.run({"input_ids": ids, "attention_mask": ids})
