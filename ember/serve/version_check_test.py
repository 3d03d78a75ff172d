import shutil

import onnx
import pytest
from onnx import TensorProto, helper

from ember.serve.runtime import load_runtime
from ember.serve.version_check import InconsistentVersion, check_version, tied_dimensions
from ember.signature import load_signature, write_signature
from testing.serve import exported

TINY_OUTPUT = [{"name": "output", "dtype": "float32", "shape": [-1, 3]}]


def version(tmp_path, inputs, outputs=TINY_OUTPUT, runtime=None):
    """tiny's model files with the signature given."""
    folder = tmp_path / "version"
    shutil.copytree(exported("tiny"), folder)
    write_signature(folder, inputs, outputs)
    signature = load_signature(folder)
    return signature, load_runtime(folder, signature, runtime)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_a_consistent_export_passes(runtime):
    signature = load_signature(exported("tiny"))
    check_version(signature, load_runtime(exported("tiny"), signature, runtime))


@pytest.mark.parametrize("runtime, inputs, outputs, message", [
    ("onnx", [{"name": "input", "dtype": "float32", "shape": [-1, 5]}], TINY_OUTPUT,
     "model.onnx does not match signature.json: input 'input': signature.json says float32 [-1, 5], "
     "model.onnx float32 [-1, 4] (-1: any size)"),
    ("onnx", [{"name": "input", "dtype": "int64", "shape": [-1, 4]}], TINY_OUTPUT,
     "input 'input': signature.json says int64 [-1, 4], model.onnx float32 [-1, 4]"),
    ("onnx", [{"name": "input", "dtype": "float32", "shape": [-1, -1]}], TINY_OUTPUT,
     "signature.json says float32 [-1, -1], model.onnx float32 [-1, 4]"),  # the model fixes what the signature frees
    ("onnx", [{"name": "input", "dtype": "float32", "shape": [-1, 4, 1]}], TINY_OUTPUT, "[-1, 4, 1]"),
    ("onnx", [{"name": "pixels", "dtype": "float32", "shape": [-1, 4]}], TINY_OUTPUT,
     "inputs: signature.json lists ['pixels'], model.onnx has ['input']"),
    ("onnx", [{"name": "input", "dtype": "float32", "shape": [-1, 4]}],
     [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}], "outputs: signature.json lists ['logits']"),
    ("onnx", [{"name": "input", "dtype": "float32", "shape": [-1, 4]}],
     [{"name": "output", "dtype": "float32", "shape": [-1, 2]}], "output 'output': signature.json says float32 [-1, 2]"),
    ("torch", [{"name": "input", "dtype": "float32", "shape": [-1, 5]}], TINY_OUTPUT,
     "model.pt2 does not match signature.json: input 'input': signature.json says float32 [-1, 5], "
     "model.pt2 float32 [-1, 4]"),
    ("torch", [{"name": "a", "dtype": "float32", "shape": [-1, 4]}, {"name": "b", "dtype": "float32", "shape": [-1, 4]}],
     TINY_OUTPUT, "signature.json lists 2 inputs, model.pt2 has 1"),
])
def test_a_signature_the_model_contradicts_is_named(tmp_path, runtime, inputs, outputs, message):
    signature, loaded = version(tmp_path, inputs, outputs, runtime)
    with pytest.raises(InconsistentVersion) as refused:
        check_version(signature, loaded)
    assert message in str(refused.value)


def onnx_version(tmp_path, node, constants: dict):
    """A one-node ONNX model X [batch, 4] -> Y [?, ?] and a signature X [-1, 4] -> Y [-1, 3] (float32), which
    agree on everything the file declares."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, None])
    initializers = [helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
                    for name, values in constants.items()]
    graph = helper.make_graph([node], "g", [x], [y], initializer=initializers)
    folder = tmp_path / "version"
    folder.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), folder / "model.onnx")
    write_signature(folder, [{"name": "X", "dtype": "float32", "shape": [-1, 4]}],
                    [{"name": "Y", "dtype": "float32", "shape": [-1, 3]}])
    signature = load_signature(folder)
    return signature, load_runtime(folder, signature)


def test_a_model_that_fails_on_its_own_signature_is_named(tmp_path):
    # Rows of 3: a batch of 2 rows of 4 values cannot be reshaped.
    node = helper.make_node("Reshape", ["X", "rows_of_3"], ["Y"])
    signature, loaded = onnx_version(tmp_path, node, {"rows_of_3": [-1, 3]})
    with pytest.raises(InconsistentVersion, match=r"model.onnx failed on a batch of zeros shaped as signature.json "
                                                  r"says \({'X': \[2, 4\]}\): .*Reshape"):
        check_version(signature, loaded)


def test_an_output_without_the_batch_rows_is_named(tmp_path):
    # Drops the first row and the last column: 2 rows in, 1 out, which the batcher could not split by request.
    node = helper.make_node("Slice", ["X", "starts", "ends"], ["Y"])
    signature, loaded = onnx_version(tmp_path, node, {"starts": [1, 0], "ends": [2 ** 62, 3]})
    with pytest.raises(InconsistentVersion, match=r"answered a batch of 2 rows .* with output 'Y' float32 \[1, 3\]"):
        check_version(signature, loaded)


def test_the_dimensions_a_model_ties_are_read_from_its_file():
    text = load_signature(exported("text"))
    assert tied_dimensions(text, load_runtime(exported("text"), text)) == ((("input_ids", 1), ("attention_mask", 1)),)
    tiny = load_signature(exported("tiny"))
    assert tied_dimensions(tiny, load_runtime(exported("tiny"), tiny, "torch")) == ()
