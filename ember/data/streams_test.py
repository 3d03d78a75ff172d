import warnings

import numpy as np
import pytest
import torch

from ember.data import image_stream
from testing.image_folders import make_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"), shards=4, per_shard=24)


def _stream(shards, **options):
    defaults = {"batch_size": 10, "image_size": (12, 12), "seed": 3, "shuffle_buffer": 16, "workers": 0}
    return image_stream(shards, **{**defaults, **options})


def _keys(stream, data_pass=0, start=0):
    return [tuple(labels.tolist()) for (images, labels), _ in stream.batches(data_pass, start)]


def test_batches_hold_every_sample_once_per_pass_in_a_new_order_each_pass(shards):
    stream = _stream(shards)
    with pytest.raises(TypeError, match="a stream has no length"):
        len(stream)
    first = list(stream.batches(0))
    assert stream.image_key == "jpg" and stream.label_key == "cls"
    (images, labels), weight = first[0]
    assert images.shape == (10, 3, 12, 12) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert weight == 1.0 and sum(len(b[0][1]) for b in first) == 96 and len(first) == 10
    everything = [torch.cat([b[0][0].flatten(1) for b in stream.batches(p)]) for p in (0, 1)]
    assert not torch.equal(everything[0], everything[1])
    assert torch.equal(everything[0].sum(0), everything[1].sum(0))  # the same samples, reordered


def test_a_resumed_pass_continues_exactly_and_workers_change_nothing(shards):
    whole = list(_stream(shards).batches(1))
    resumed = list(_stream(shards, workers=2).batches(1, start=4))
    assert len(resumed) == len(whole) - 4
    for ((a, la), _), ((b, lb), _) in zip(whole[4:], resumed):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_each_process_reads_its_own_shards_and_its_share_of_every_batch(shards):
    parts = []
    for rank in range(2):
        stream = _stream(shards)
        stream.split_across(rank, 2)
        parts.append(list(stream.batches(0)))
    assert all(b[0][0].shape[0] == 5 and b[1] == 1.0 for part in parts for b in part[:-1])  # 48 each: 9x5 + 3
    seen = torch.cat([b[0][0].flatten(1) for part in parts for b in part])
    alone = torch.cat([b[0][0].flatten(1) for b in _stream(shards).batches(0)])
    assert torch.equal(seen.sum(0), alone.sum(0))  # together, every sample once


def test_a_hugging_face_dataset_streams_too():
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rng = np.random.default_rng(0)
    table = datasets.Dataset.from_dict({
        "picture": [Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)) for _ in range(9)],
        "label": [i % 2 for i in range(9)]}).cast_column("label", datasets.ClassLabel(names=["no", "yes"]))
    stream = image_stream(table, batch_size=4, image_size=(8, 8), seed=0, workers=0, data_format="channels_last")
    batches = [b for b, _ in stream.batches(0)]
    assert stream.image_key == "picture" and stream.class_names == ["no", "yes"] and len(stream) == 3
    assert [len(y) for _, y in batches] == [4, 4, 1] and batches[0][0].shape == (4, 8, 8, 3)


def test_undecodable_samples_are_skipped_by_name(tmp_path):
    import io
    import tarfile

    good = make_shards(tmp_path / "good", shards=1, per_shard=3)[0]
    with tarfile.open(good, "a") as tar:
        for name, data in (("broken.jpg", b"not a jpeg"), ("broken.cls", b"1")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stream = image_stream(good, batch_size=8, image_size=(8, 8), shuffle=False, workers=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (images, labels), _ = next(stream.batches(0))
    assert len(labels) == 3 and any("broken" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="broken.*cannot be read as an image"):
        list(image_stream(good, image_size=(8, 8), shuffle=False, workers=0, on_error="raise").batches(0))


def test_fit_trains_on_a_stream_with_and_without_steps_per_epoch(shards):
    import ember
    from ember import layers

    ember.seed(0)
    model = ember.Sequential([layers.Rescaling(1 / 255, input_shape=(3, 12, 12)), layers.Conv2D(4, 3),
                              layers.GlobalAveragePooling2D(), layers.Dense(3)])
    model.compile("adam", loss="cross_entropy", metrics=["accuracy"], precision="fp32")
    stream = _stream(shards)
    assert len(model.fit(stream, epochs=2, steps_per_epoch=4, verbose=0).history["loss"]) == 2
    assert len(model.fit(stream, epochs=1, verbose=0).history["loss"]) == 1  # one whole pass
    assert model.predict(stream, verbose=0).shape == (96, 3)


def test_bad_sources_and_arguments_say_what_was_expected(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="match no file"):
        image_stream(str(tmp_path / "none-*.tar"))
    with pytest.raises(ValueError, match="image_key 'png' is not a column"):
        image_stream(shards, image_key="png")
    with pytest.raises(ValueError, match="shuffle_buffer must be a positive integer"):
        image_stream(shards, shuffle_buffer=0)


def test_decode_workers_end_on_terminate_right_after_they_start_under_a_python_sigterm_handler():
    """fit's preemption handler is a Python one, which a just-forked worker inherits: a SIGTERM from
    `terminate()` at once must still end the worker (Python drops signals pending at fork)."""
    import multiprocessing
    import signal

    from ember.data.streams import _decode_pool

    def timed_out(signum, frame):
        raise TimeoutError("a decode worker did not end on terminate()")

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    previous_alarm = signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(60)
    try:
        for _ in range(40):
            pool = _decode_pool(2)
            pool.terminate()
            pool.join()
        assert not multiprocessing.active_children()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_alarm)
        signal.signal(signal.SIGTERM, previous)
