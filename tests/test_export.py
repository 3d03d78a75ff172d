"""export(): a small transformer, the CLI, and bad input (uncapturable forward, wrong shapes, corrupt files)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import ember
from ember import layers
from ember.cli import main
from ember.deploy.capture import CaptureError
from ember.deploy.extras import MissingExtraError, require


class TinyTextClassifier(ember.Model):
    def __init__(self, vocab=50, dim=16, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids):
        return self.head(self.encoder(self.embed(input_ids)).mean(1))


@pytest.mark.slow
def test_transformer_exports_to_onnx_and_program_with_variable_batch_and_length(tmp_path):
    torch.manual_seed(0)
    model = TinyTextClassifier()
    reports = model.export(tmp_path, format=["onnx", "program"], example=torch.randint(0, 50, (2, 7)))
    assert all(r.max_abs_diff <= 1e-4 for r in reports)
    ids = torch.randint(0, 50, (3, 11))  # another batch size and sequence length than the example
    with torch.inference_mode():
        eager = model.eval()(ids).numpy()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", "sequence"] and session.get_outputs()[0].shape == ["batch", 3]
    assert np.abs(session.run(None, {"input": ids.numpy()})[0] - eager).max() <= 1e-4
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    assert np.abs(program(ids).detach().numpy() - eager).max() <= 1e-5


@pytest.mark.slow
def test_masked_recurrent_model_exports_with_a_variable_sequence_length(tmp_path):
    """torch traces LSTM/GRU unrolled over the example's steps unless told otherwise: the export must
    answer padded batches of other lengths, in ONNX (its LSTM and GRU operators) and in .pt2."""
    ember.seed(0)
    model = ember.Sequential([layers.Embedding(50, 8, mask_zero=True),
                              layers.Bidirectional(layers.LSTM(8, return_sequences=True)), layers.GRU(8),
                              layers.Dense(3)])
    example = torch.randint(1, 50, (2, 7))
    example[1, 4:] = 0
    reports = model.export(tmp_path, format=["onnx", "program"], example=example)
    assert all(r.max_abs_diff <= 1e-5 for r in reports)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", "sequence"]
    assert {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node} >= {"LSTM", "GRU"}
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    for length in (3, 12):
        ids = torch.randint(1, 50, (3, length))
        ids[0, length // 2:] = 0
        with torch.inference_mode():
            eager = model.eval()(ids).numpy()
        assert np.abs(session.run(None, {"input": ids.numpy()})[0] - eager).max() <= 1e-5
        assert np.abs(program(ids).detach().numpy() - eager).max() <= 1e-5


def test_a_model_whose_code_fixes_the_length_exports_at_that_length(tmp_path):
    """A Flatten before a Dense needs exactly the example's steps: the export and its signature say so."""
    ember.seed(0)
    model = ember.Sequential([layers.Embedding(50, 4), layers.Flatten(), layers.Dense(3)])
    model.export(tmp_path, format="onnx", example=torch.randint(0, 50, (2, 7)))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 7]
    assert json.loads((tmp_path / "signature.json").read_text())["inputs"][0]["shape"] == [-1, 7]


class DataDependentBranch(ember.Model):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class FixedBatch(ember.Model):
    def forward(self, x):
        return x.view(4, -1)


def test_uncapturable_forward_names_the_construct_and_a_fix(tmp_path):
    with pytest.raises(CaptureError, match=r"(?s)if x.sum\(\) > 0.*torch.where"):
        DataDependentBranch().export(tmp_path, format="program", example=torch.randn(4, 3))
    with pytest.raises(CaptureError, match=r"fixes the batch size.*x.flatten\(1\)"):
        FixedBatch().export(tmp_path, format="onnx", example=torch.randn(4, 3))


def _digits_model():
    ember.seed(0)
    return ember.Sequential([layers.Conv2D(4, 3, input_shape=(1, 28, 28)), layers.Flatten(), layers.Dense(10)])


def test_failed_export_overwrites_nothing(tmp_path):
    model = _digits_model()
    (tmp_path / "model.onnx").write_bytes(b"the previous export")
    with pytest.raises(ValueError, match=r"example does not fit.*\(batch, 1, 28, 28\).*\(2, 3, 28, 28\)"):
        model.export(tmp_path, format="onnx", example=torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"calibration_data=.*\(N, 1, 28, 28\).*--calibration"):
        model.export(tmp_path, format=["onnx", "int8"], example=torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"held_out input 'input' has shape \(5, 28, 28\), expected \(N, 1, 28, 28\)"):
        model.export(tmp_path, format="onnx", example=torch.randn(2, 1, 28, 28), held_out=torch.randn(5, 28, 28))
    with pytest.raises(ValueError, match="unknown export format.*savedmodel"):
        model.export(tmp_path, format="savedmodel", example=torch.randn(2, 1, 28, 28))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_bytes() == b"the previous export"
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))  # no staging folder left behind


def test_ember_deploy_export_is_the_function_even_after_importing_its_module():
    import ember.deploy.export  # noqa: F401  (the module shares the function's name)

    assert callable(ember.deploy.export) and ember.deploy.export.__module__ == "ember.deploy.export"


def test_missing_extra_names_the_pip_extra():
    with pytest.raises(MissingExtraError, match=r"pip install 'ember\[litert\]'"):
        require("ember_no_such_module", "tflite", "litert")


@pytest.mark.slow
def test_cli_exports_a_model_file(tmp_path, capsys):
    model = _digits_model()
    model.save(tmp_path / "digits.ember")
    np.save(tmp_path / "calibration.npy", np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32))
    out = tmp_path / "export"
    assert main(["export", str(tmp_path / "digits.ember"), "--to", "onnx,program,int8", "--out", str(out),
                 "--calibration", str(tmp_path / "calibration.npy")]) == 0
    assert {"model.onnx", "model.pt2", "model.int8.onnx", "model.int8.ort", "signature.json"} <= {
        p.name for p in out.iterdir()}
    printed = capsys.readouterr().out
    assert "max |diff|" in printed and "int8" in printed


def test_cli_refuses_a_truncated_model_file_and_keeps_the_folder(tmp_path, capsys):
    _digits_model().save(tmp_path / "digits.ember")
    data = (tmp_path / "digits.ember").read_bytes()
    (tmp_path / "broken.ember").write_bytes(data[: len(data) // 2])
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"keep me")
    assert main(["export", str(tmp_path / "broken.ember"), "--to", "onnx", "--out", str(out)]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["model.onnx"] and (out / "model.onnx").read_bytes() == b"keep me"


@pytest.mark.slow
def test_a_functional_model_exports_its_named_inputs_and_outputs(tmp_path):
    ember.seed(0)
    image, features = ember.Input((6, 6, 1), name="image"), ember.Input((3,), name="features")
    x = layers.GlobalAvgPool2D(data_format="channels_last")(
        layers.Conv2D(4, 3, activation="relu", data_format="channels_last")(image))
    joined = layers.concatenate([x, layers.Dense(4)(features)])
    model = ember.Model([image, features], {"label": layers.Dense(3)(joined), "value": layers.Dense(1)(joined)})
    example = {"features": torch.randn(4, 3), "image": torch.randn(4, 6, 6, 1)}  # a dict, in any order
    reports = model.export(tmp_path, format=["onnx", "program"], example=example)
    assert all(r.max_abs_diff <= 1e-5 for r in reports)
    signature = __import__("json").loads((tmp_path / "signature.json").read_text())
    assert [(i["name"], i["shape"]) for i in signature["inputs"]] == [("image", [-1, 6, 6, 1]), ("features", [-1, 3])]
    assert [(o["name"], o["shape"]) for o in signature["outputs"]] == [("label", [-1, 3]), ("value", [-1, 1])]
    data = {"image": np.random.rand(5, 6, 6, 1).astype("float32"), "features": np.random.rand(5, 3).astype("float32")}
    with torch.inference_mode():
        eager = model([torch.from_numpy(data["image"]), torch.from_numpy(data["features"])])
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    label, value = session.run(["label", "value"], data)
    assert np.abs(label - eager["label"].numpy()).max() <= 1e-5 and np.abs(value - eager["value"].numpy()).max() <= 1e-5


def test_an_output_named_like_an_inner_op_exports(tmp_path):
    # DenseNet121 without its top ends in a layer "relu"; torch.onnx names inner values after ops ("relu").
    image = ember.Input((5, 5, 2), name="image")
    x = layers.Conv2D(3, 3, activation="relu", data_format="channels_last")(image)
    model = ember.Model(image, layers.ReLU(name="relu")(layers.Dense(4)(layers.Flatten()(x) - 0.5)))
    report = model.export(tmp_path, format="onnx", example=torch.randn(2, 5, 5, 2))
    assert report.max_abs_diff <= 1e-5
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["relu"]
    assert sum(name == "relu" for node in graph.node for name in node.output) == 1


def test_word_ids_beside_float_features_are_compared_on_rows_of_the_example(tmp_path):
    # With no held_out, floats are random rows; ids are drawn from the example's rows (random ones
    # would be out of the vocabulary), as many rows as the floats.
    words, tags = ember.Input((None,), name="words", dtype="int64"), ember.Input((3,), name="tags")
    joined = layers.concatenate([ember.ops.mean(layers.Embedding(20, 4)(words), axis=1), tags])
    model = ember.Model([words, tags], layers.Dense(2)(joined))
    example = {"words": torch.randint(0, 20, (4, 7)), "tags": torch.rand(4, 3)}
    report = model.export(tmp_path, format="onnx", example=example)
    assert report.max_abs_diff <= 1e-5


@pytest.mark.slow
def test_a_functional_models_web_bundle_takes_and_returns_named_tensors_in_chromium(tmp_path):
    from testing.browser import bundle_page

    ember.seed(0)
    a, b = ember.Input((3,), name="a"), ember.Input((2,), name="b")
    joined = layers.concatenate([layers.Dense(4)(a), b])
    model = ember.Model([a, b], {"first": layers.Dense(2)(joined), "second": ember.ops.sum(joined, axis=-1)})
    model.export(tmp_path, format="web", example=[torch.randn(2, 3), torch.randn(2, 2)])
    x_a, x_b = np.random.rand(2, 3).astype("float32"), np.random.rand(2, 2).astype("float32")
    with torch.inference_mode():
        eager = model([torch.from_numpy(x_a), torch.from_numpy(x_b)])
    with bundle_page(tmp_path / "web") as (page, errors):
        shown = page.input_value("#json-input")  # the JSON box starts with zeros for every named input
        outputs = page.evaluate("async (feeds) => await ember.run(feeds)", {"a": x_a.tolist(), "b": x_b.tolist()})
    assert not errors and set(__import__("json").loads(shown)) == {"a", "b"}
    for name in ("first", "second"):
        got = np.asarray(outputs[name]["data"]).reshape(outputs[name]["dims"])
        assert np.abs(got - eager[name].numpy()).max() <= 1e-5, name
