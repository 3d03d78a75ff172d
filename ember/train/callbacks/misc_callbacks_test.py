"""TerminateOnNaN, LearningRateScheduler, LambdaCallback, TensorBoard, History.plot."""
import numpy as np
import pytest

from ember.callbacks import LambdaCallback, LearningRateScheduler, TensorBoard, TerminateOnNaN


def test_terminate_on_nan_stops_at_the_first_bad_batch(toy):
    x, y, build = toy
    model = build()
    model.compile("sgd", "mse", lr=1e30)
    seen = []
    with pytest.warns(RuntimeWarning):
        history = model.fit(x, np.full((64, 2), 1e20, np.float32), epochs=5, batch_size=8, verbose=0,
                            callbacks=[TerminateOnNaN(), LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))])
    assert len(history.epoch) == 1 and len(seen) < 8


def test_learning_rate_scheduler_sets_each_epoch(toy):
    x, y, build = toy
    history = build().fit(x, y, epochs=3, verbose=0,
                          callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))])
    assert history.history["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_lambda_callback_hooks_and_unknown_hook(toy):
    x, y, build = toy
    calls = []
    build().fit(x, y, epochs=2, verbose=0, callbacks=[LambdaCallback(
        on_train_begin=lambda logs: calls.append("begin"),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch", epoch, round(logs["loss"], 6) > 0)),
        on_train_end=lambda logs: calls.append("end"))])
    assert calls == ["begin", ("epoch", 0, True), ("epoch", 1, True), "end"]
    with pytest.raises(ValueError, match="unknown hook 'on_epoch_finish'"):
        LambdaCallback(on_epoch_finish=print)


def test_batch_logs_are_floats_when_read(toy):
    x, y, build = toy
    values = []
    build().fit(x, y, epochs=1, batch_size=16, verbose=0,
                callbacks=[LambdaCallback(on_train_batch_end=lambda b, logs: values.append(logs["loss"]))])
    assert len(values) == 4 and all(isinstance(v, float) for v in values)


def test_tensorboard_writes_real_event_files(toy, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y, build = toy
    build().fit(x, y, epochs=2, verbose=0, validation_data=(x, y), callbacks=[TensorBoard(tmp_path)])
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "validation/loss", "train/accuracy"} <= set(tags)
    assert len(events.Scalars("train/loss")) == 2


def test_history_plot_writes_a_png(toy, tmp_path):
    x, y, build = toy
    history = build().fit(x, y, epochs=2, verbose=0, validation_data=(x, y))
    path = history.plot(tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
