"""The define-and-train issue's acceptance checks, on the real digits."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


@pytest.mark.slow
def test_seed_train_loop_and_ember_fit_reach_the_same_accuracy():
    import train_loop

    seed_history, ember_history = train_loop.main(num_epochs=10)
    # The last three epochs' mean: one epoch's accuracy on 359 images moves by a point either way
    # (4 images) with the random stream alone, in both loops.
    seed_acc, ember_acc = (sum(h["val_accuracy"][-3:]) / 3 for h in (seed_history, ember_history))
    assert abs(seed_acc - ember_acc) <= 0.01, (seed_history["val_accuracy"], ember_history["val_accuracy"])
    assert ember_acc >= 0.95  # 10 epochs of the seed recipe on 1,437 digits


@pytest.mark.slow
def test_seed_keras_model_with_the_three_callbacks_reaches_98_percent(tmp_path):
    import train_fit

    model, history, results = train_fit.main(epochs=30, out_dir=tmp_path)
    assert results["accuracy"] >= 0.98, history.history["val_accuracy"]
    assert (tmp_path / "best_model.keras").exists()


def test_both_convnets_have_421642_parameters():
    import define_keras
    import define_pytorch

    assert define_pytorch.ConvNet().summary(input_shape=(1, 28, 28), print_fn=None).total_params == 421_642
    assert define_keras.build_convnet().summary(print_fn=None).total_params == 421_642


# Every line `ember demo` prints, by its shape: the data, summary(), fit's progress, the results, the
# export table. A converter's chatter (torch.onnx, LiteRT, TFLite, ExecuTorch, torchao) matches none.
EMBER_LINES = [re.compile(pattern) for pattern in (
    r"^$", r"^digits: ", r"^Model: ", r"^=+$", r"^Layer \(type\)", r"^\w+ \(\w+\)\s+\(None, ",
    r"^(Total|Trainable|Non-trainable) params", r"^Epoch \d+/\d+$", r"^\d+/\d+ \[=+\] - ", r"^validation: loss ",
    r"^exported to ", r"^format\s+files\s", r"^-+(\s+-+)+$", r"^(onnx|program|int8|tflite|pte|web)\s+\S")]


@pytest.mark.slow
def test_ember_demo_quick_prints_only_embers_lines(tmp_path):
    # A subprocess: the converters' C++ libraries write to the process's file descriptors directly.
    result = subprocess.run([sys.executable, "-c", "import sys; from ember.cli import main; sys.exit(main())", "demo",
                             "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "curves.png").exists() and (tmp_path / "best_model.ember").exists()
    printed = (result.stdout + result.stderr).splitlines()
    assert [line for line in printed if not any(p.search(line) for p in EMBER_LINES)] == []
    assert sum(bool(re.match(r"(onnx|program|int8|tflite|pte|web)\s", line)) for line in printed) == 6
