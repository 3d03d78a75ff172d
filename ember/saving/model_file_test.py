"""Model files are untrusted input: crafted ones get ModelFileError, import nothing, allocate nothing big."""
import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import ember
from ember import layers
from ember.saving import ModelFileError

# Written by ember before #16 and committed: the format must keep reading it.
SEQUENTIAL_V1 = Path(__file__).parents[2] / "tests" / "data" / "formats" / "sequential-v1.ember"

class TwoLayers(ember.Model):
    def __init__(self, hidden=4):
        super().__init__()
        self.first, self.second = torch.nn.Linear(3, hidden), torch.nn.Linear(hidden, 2)

    def forward(self, x):
        return self.second(self.first(x).relu())


def _rewrite(path, change_meta=None, members=None):
    """The model file with ember.json changed (a CRC-valid zip, as a crafted file would be)."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if change_meta is not None:
        meta = json.loads(contents["ember.json"])
        change_meta(meta)
        contents["ember.json"] = json.dumps(meta).encode()
    contents.update(members or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())


def _sequential_file(tmp_path):
    model = ember.Sequential([layers.Input((3,)), layers.Dense(4), layers.Dense(2)])
    model.save(tmp_path / "m.ember")
    return tmp_path / "m.ember"


def test_a_class_named_by_the_file_is_not_imported(tmp_path):
    TwoLayers().save(tmp_path / "m.ember")
    _rewrite(tmp_path / "m.ember", lambda meta: meta["architecture"].update(class_path="this.Zen"))
    sys.modules.pop("this", None)
    with pytest.raises(ModelFileError, match=r"this.Zen, which is not an ember.Model subclass defined in this "
                                             r"process.*custom_objects"):
        ember.load(tmp_path / "m.ember")
    assert "this" not in sys.modules  # importing `this` prints the Zen of Python: it never ran


def _run_fresh(script: str) -> str:
    """The output of `script` run by a new interpreter, where nothing of ember is imported yet."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_class_of_an_ember_module_named_by_the_file_is_not_imported_either(tmp_path):
    TwoLayers().save(tmp_path / "m.ember")
    _rewrite(tmp_path / "m.ember", lambda meta: meta["architecture"].update(class_path="ember.demo.ConvNet"))
    printed = _run_fresh("import sys, ember\nfrom ember.saving import ModelFileError\n"
                         f"try:\n    ember.load({str(tmp_path / 'm.ember')!r})\n"
                         "except ModelFileError as error:\n    print(error)\n"
                         "print('ember.demo imported:', 'ember.demo' in sys.modules)\n")
    assert "names the model class ember.demo.ConvNet, which is not an ember.Model subclass" in printed
    assert printed.endswith("ember.demo imported: False\n")


def test_ember_saving_alone_imports_no_model_class_and_ember_load_registers_them():
    printed = _run_fresh("import sys, ember.saving\n"
                         "print('ember.define imported:', 'ember.define' in sys.modules)\n"
                         f"try:\n    ember.saving.load_model({str(SEQUENTIAL_V1)!r})\n"
                         "except ember.saving.ModelFileError as error:\n    print(error)\n"
                         f"print(type(ember.load({str(SEQUENTIAL_V1)!r})).__name__)\n")
    assert printed.startswith("ember.define imported: False\n")
    assert "unknown architecture kind 'sequential'; expected 'class' or one registered in this process, [] " \
           "(ember.load() registers ember's own)" in printed
    assert printed.endswith("\nSequential\n")


def test_defined_subclasses_and_allowed_classes_load(tmp_path):
    model = TwoLayers(hidden=5)
    model.save(tmp_path / "m.ember")
    x = torch.rand(2, 3)
    torch.testing.assert_close(ember.load(tmp_path / "m.ember")(x), model(x))  # defined in this process

    class Elsewhere(torch.nn.Module):  # not an ember.Model: only an explicit allowance rebuilds it
        def __init__(self, hidden=4):
            super().__init__()
            self.first, self.second = torch.nn.Linear(3, hidden), torch.nn.Linear(hidden, 2)

    _rewrite(tmp_path / "m.ember", lambda meta: meta["architecture"].update(class_path="somewhere.Elsewhere"))
    with pytest.raises(ModelFileError, match="somewhere.Elsewhere"):
        ember.load(tmp_path / "m.ember")
    loaded = ember.load(tmp_path / "m.ember", custom_objects={"Elsewhere": Elsewhere})
    assert isinstance(loaded, Elsewhere) and loaded.first.out_features == 5
    assert isinstance(ember.load(tmp_path / "m.ember", custom_objects=[Elsewhere]), Elsewhere)


def test_a_layer_sized_by_the_file_fails_before_allocating(tmp_path):
    path = _sequential_file(tmp_path)
    _rewrite(path, lambda meta: meta["architecture"]["config"]["layers"][1]["config"].update(units=2**34))
    with pytest.raises(ModelFileError, match=r"does not fit Sequential: .*mis-shaped: .*file \(2, 4\) vs "
                                             r"model \(17179869184, 4\)"):
        ember.load(path)  # 2**34 x 3 floats would be 192 GiB


@pytest.mark.parametrize("damage, message", [
    ("layers are lists", "cannot be built"),
    ("pickle as ember.json", "ember.json is not UTF-8"),
    ("no architecture", "no architecture object"),
    ("no class_path", "names no class_path"),
    ("arguments a list", "not an object of named arguments"),
    ("weights missing a key", r"missing in the file: .*bias"),
    ("compile options of another kind", "compile configuration cannot be applied"),
    ("deflated member", "ember writes members stored"),
    ("deep nesting", "nests too deeply"),
])
def test_crafted_model_files_raise_model_file_errors(tmp_path, damage, message):
    path = _sequential_file(tmp_path)
    if damage == "layers are lists":
        _rewrite(path, lambda meta: meta["architecture"]["config"].update(layers=[["Dense", 4]]))
    elif damage == "pickle as ember.json":
        _rewrite(path, members={"ember.json": pickle.dumps({"format": "ember-model"})})
    elif damage == "no architecture":
        _rewrite(path, lambda meta: meta.pop("architecture"))
    elif damage in ("no class_path", "arguments a list"):
        TwoLayers().save(path)
        _rewrite(path, lambda meta: meta["architecture"].pop("class_path") if damage == "no class_path"
                 else meta["architecture"].update(arguments=[4]))
    elif damage == "weights missing a key":
        from safetensors.torch import save

        weights = {k: v for k, v in ember.load(path).state_dict().items() if not k.endswith("1.bias")}
        _rewrite(path, members={"weights.safetensors": save(weights)})
    elif damage == "compile options of another kind":
        model = ember.Sequential([layers.Input((3,)), layers.Dense(2)])
        model.compile("adamw", "cross_entropy")
        model.save(path)
        _rewrite(path, lambda meta: meta["compile"].update(optimizer_options={"not_an_option": 1}))
    elif damage == "deflated member":
        data = path.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            contents = {name: archive.read(name) for name in archive.namelist()}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, member in contents.items():
                archive.writestr(name, member)
    elif damage == "deep nesting":
        _rewrite(path, members={"ember.json": b"[" * 200_000 + b"]" * 200_000})
    with pytest.raises(ModelFileError, match=message):
        ember.load(path)


def test_files_written_before_the_container_module_still_load():
    """A model file written by ember before #16 (committed as a fixture) loads unchanged."""
    model = ember.load(SEQUENTIAL_V1)
    x = torch.from_numpy(np.linspace(0, 1, 12, dtype="float32").reshape(4, 3))
    expected = np.load(SEQUENTIAL_V1.with_suffix(".expected.npy"))
    np.testing.assert_allclose(model(x).detach().numpy(), expected, rtol=0, atol=0)
