"""BackupAndRestore in one process: a run interrupted by an exception and fitted again must end
bit-identical to one that was never interrupted (weights, logged history, callback decisions)."""
import multiprocessing
import os
import shutil
import signal
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import ember
from ember import layers
from ember.callbacks import BackupAndRestore, CSVLogger, EarlyStopping, LambdaCallback, ReduceLROnPlateau
from ember.train.preemption import Preempted


class Interrupt(Exception):
    pass


class InterruptAt(ember.callbacks.Callback):
    """Raises after the n-th batch this process trains (a crash that skips on_train_end)."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.n:
            raise Interrupt


class Pairs(Dataset):
    """A map-style Dataset that is not a TensorDataset (which ember slices as arrays)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _run(backup=None, interrupt_at=None, data="arrays", epochs=3, metrics=("accuracy",), extra=(), conv=False,
         augment=False, strategy=None, **compile_args):
    ember.seed(7)
    x = np.random.rand(50, 6).astype("float32")
    y = (x[:, 0] + x[:, 1] > 1).astype("int64")
    model = ember.Sequential([layers.Dense(12, activation="relu"), layers.Dropout(0.4), layers.Dense(2)])
    if conv or augment:  # convolutions train channels_last: weights and optimizer moments have permuted strides
        x = x.reshape(50, 2, 1, 3).repeat(3, axis=2)
        # Augmentation draws from the global RNG, or when seeded from a stream whose position is in the weights.
        augmentation = [layers.RandomFlip(), layers.RandomRotation(0.1, seed=1), layers.RandomZoom(0.2),
                        layers.RandomTranslation(0.1, 0.1, seed=2), layers.RandomCrop(2, 2),
                        layers.RandomContrast(0.3, (0, 1)), layers.RandomBrightness(0.1, (0, 1), seed=3)]
        model = ember.Sequential([*(augmentation if augment else []),
                                  layers.Conv2D(16, 3, padding="same", activation="relu"), layers.Dropout(0.4),
                                  layers.Flatten(), layers.Dense(2)])
    compile_args = {"lr": 0.02, "lr_schedule": "cosine", "lr_schedule_interval": "batch", **compile_args}
    model.compile("adamw", "cross_entropy", list(metrics), **compile_args)
    callbacks = [EarlyStopping("loss", patience=50), ReduceLROnPlateau("loss", patience=1, factor=0.5), *extra]
    if interrupt_at:
        callbacks.insert(0, InterruptAt(interrupt_at))
    if backup is not None:
        callbacks.append(backup)
    if data == "arrays":
        inputs = dict(x=x, y=y)
    elif data == "dataset":  # ember builds the DataLoader, with its own generator
        inputs = dict(x=Pairs(x, y))
    else:  # the user's DataLoader: no generator, so its order comes from the global torch RNG
        inputs = dict(x=DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8,
                                   shuffle=True))
    history = model.fit(**inputs, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks, strategy=strategy)
    return model, history


def _assert_same(a, b):
    (model_a, history_a), (model_b, history_b) = a, b
    weights_a, weights_b = ember.distributed.gather_state_dict(model_a), ember.distributed.gather_state_dict(model_b)
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert history_a.history == history_b.history


def _interrupted_then_resumed(tmp_path, interrupt_at, **options):
    make = lambda: BackupAndRestore(tmp_path / "backup", **{k: v for k, v in options.items()  # noqa: E731
                                                           if k in ("save_freq", "keep", "delete_checkpoint")})
    run_options = {k: v for k, v in options.items() if k not in ("save_freq", "keep", "delete_checkpoint")}
    with pytest.raises(Interrupt):
        _run(make(), interrupt_at=interrupt_at, **run_options)
    return _run(make(), **run_options)


@pytest.mark.parametrize("data", ["arrays", "dataset", "user_loader"])
def test_mid_epoch_resume_is_bit_identical(tmp_path, data):
    reference = _run(data=data)
    _assert_same(_interrupted_then_resumed(tmp_path, 12, save_freq=2, data=data), reference)


def test_channels_last_model_resumes_exactly(tmp_path):
    _assert_same(_interrupted_then_resumed(tmp_path, 10, save_freq=3, conv=True), _run(conv=True))


def test_augmentation_layers_resume_exactly(tmp_path):
    _assert_same(_interrupted_then_resumed(tmp_path, 10, save_freq=3, augment=True), _run(augment=True))


def test_epoch_resume_restores_callbacks_and_csv(tmp_path):
    csv = lambda name: CSVLogger(tmp_path / name)  # noqa: E731
    reference = _run(extra=[csv("ref.csv")], epochs=4)
    resumed = _interrupted_then_resumed(tmp_path, 17, extra=[csv("run.csv")], epochs=4)
    _assert_same(resumed, reference)
    assert (tmp_path / "run.csv").read_text() == (tmp_path / "ref.csv").read_text()
    assert not (tmp_path / "backup").exists()  # delete_checkpoint=True: removed once fit() returned


def test_torchmetrics_and_accumulation_resume_mid_epoch(tmp_path):
    torchmetrics = pytest.importorskip("torchmetrics")
    metric = lambda: torchmetrics.Accuracy(task="multiclass", num_classes=2)  # noqa: E731
    reference = _run(metrics=("accuracy", metric()), accumulate_steps=2)
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupt):
        _run(BackupAndRestore(backup_dir, save_freq=1), interrupt_at=10, metrics=("accuracy", metric()),
             accumulate_steps=2)
    # Partial gradients are not saved, so backups wait for optimizer steps (even batch counts).
    assert [int(p.stem.split("-")[2]) % 2 for p in backup_dir.glob("backup-*.zip")] == [0, 0]
    resumed = _run(BackupAndRestore(backup_dir, save_freq=1), metrics=("accuracy", metric()), accumulate_steps=2)
    _assert_same(resumed, reference)


def test_corrupt_newest_backup_falls_back_to_the_previous(tmp_path):
    reference = _run()
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupt):
        _run(BackupAndRestore(backup_dir), interrupt_at=20)
    newest = sorted(backup_dir.glob("backup-*.zip"))[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the tensors: the zip CRC catches it
    newest.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        resumed = _run(BackupAndRestore(backup_dir, delete_checkpoint=False))
    _assert_same(resumed, reference)
    assert (backup_dir / (newest.name + ".corrupt")).exists()  # set aside, not deleted


def test_no_readable_backup_starts_over_and_keeps_the_bad_files(tmp_path):
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / "backup-000002-000000000.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(RuntimeWarning, match="corrupt or truncated"):
        resumed = _run(BackupAndRestore(backup_dir))
    _assert_same(resumed, _run())
    assert [p.name for p in backup_dir.iterdir()] == ["backup-000002-000000000.zip.corrupt"]


def test_finished_run_kept_with_delete_checkpoint_false_returns_at_once(tmp_path):
    backup_dir = tmp_path / "backup"
    first = _run(BackupAndRestore(backup_dir, delete_checkpoint=False))
    counter = InterruptAt(10**9)
    again = _run(BackupAndRestore(backup_dir, delete_checkpoint=False), extra=[counter])
    assert counter.seen == 0
    _assert_same(again, first)


def test_early_stopping_decision_survives_a_crash(tmp_path):
    def run(backup=None, interrupt_at=None):
        stop = EarlyStopping("loss", patience=1, min_delta=10.0)  # never improves enough: stops at epoch 2
        return _run(backup, interrupt_at=interrupt_at, epochs=6, extra=[stop])

    reference = run()
    assert len(reference[1].history["loss"]) == 2
    with pytest.raises(Interrupt):
        run(BackupAndRestore(tmp_path / "b", delete_checkpoint=False), interrupt_at=9)
    resumed = run(BackupAndRestore(tmp_path / "b", delete_checkpoint=False))
    _assert_same(resumed, reference)
    counter = InterruptAt(10**9)  # the kept backup says "stopped": nothing more to train
    _run(BackupAndRestore(tmp_path / "b", delete_checkpoint=False), epochs=6, extra=[counter])
    assert counter.seen == 0


def test_keeps_the_newest_k_and_no_temporaries(tmp_path):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupt):
        _run(BackupAndRestore(backup_dir, save_freq=1, keep=3), interrupt_at=15)
    # 7 batches an epoch; the 15th batch is epoch 3's first. A backup due on an epoch's last batch is
    # taken at its end, as "epoch 2 done" (000002-000000000).
    assert sorted(os.listdir(backup_dir)) == ["backup-000001-000000005.zip", "backup-000001-000000006.zip",
                                              "backup-000002-000000000.zip"]


def test_backup_of_another_model_is_refused_before_anything_changes(tmp_path):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupt):
        _run(BackupAndRestore(backup_dir), interrupt_at=8)
    ember.seed(0)
    other = ember.Sequential([layers.Dense(5), layers.Dense(2)])
    other.compile("adamw", "cross_entropy")
    x, y = np.random.rand(20, 6).astype("float32"), np.zeros(20, dtype="int64")
    with pytest.raises(ValueError, match="another model or optimizer.*mis|another model or optimizer"):
        other.fit(x, y, epochs=1, verbose=0, resume=backup_dir)
    assert len(list(backup_dir.glob("backup-*.zip"))) == 1


@pytest.mark.parametrize("bad", [dict(save_freq=0), dict(save_freq="batch"), dict(keep=0), dict(backup_dir="")])
def test_bad_arguments_say_what_is_expected(tmp_path, bad):
    with pytest.raises(ValueError, match="save_freq|keep|backup_dir"):
        BackupAndRestore(**{"backup_dir": tmp_path, **bad})


class SignalAt(ember.callbacks.Callback):
    """Sends this process `signum` after its n-th batch, or in the last epoch's on_epoch_end (n=None),
    as a scheduler would; records the handler of SIGTERM after each batch."""

    def __init__(self, n, signum=signal.SIGTERM, epochs=3):
        self.n, self.signum, self.epochs, self.seen, self.handlers = n, signum, epochs, 0, set()

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        self.handlers.add(signal.getsignal(signal.SIGTERM))
        if self.seen == self.n:
            signal.raise_signal(self.signum)

    def on_epoch_end(self, epoch, logs=None):
        if self.n is None and epoch + 1 == self.epochs:
            signal.raise_signal(self.signum)


class OuterHandler:
    """The handler of SIGTERM and SIGUSR1 before fit(): it records what reaches it (a signal fit()
    failed to catch would otherwise end the tests)."""

    def __init__(self):
        self.received = []

    def __call__(self, signum, frame):
        self.received.append(signum)


@pytest.fixture
def outer_handler():
    handler, signals = OuterHandler(), (signal.SIGTERM, signal.SIGUSR1)
    previous = [signal.signal(signum, handler) for signum in signals]
    yield handler
    for signum, was in zip(signals, previous):
        signal.signal(signum, was)


def test_preemption_signal_backs_up_after_the_step_exits_and_resumes_bit_identical(tmp_path, outer_handler):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Preempted) as preempted:
        _run(BackupAndRestore(backup_dir), extra=[SignalAt(10)])
    assert preempted.value.code == 143 and isinstance(preempted.value, SystemExit)
    assert preempted.value.report == f"SIGTERM received: backed up to {backup_dir}/backup-000001-000000003.zip; " \
                                     "exiting with code 143"
    # 7 batches an epoch: the 10th is epoch 2's third (the only other backup is epoch 1's end)
    assert sorted(p.name for p in backup_dir.iterdir()) == ["backup-000001-000000000.zip",
                                                             "backup-000001-000000003.zip"]
    assert signal.getsignal(signal.SIGTERM) is outer_handler and outer_handler.received == []  # back, not called
    _assert_same(_run(BackupAndRestore(backup_dir)), _run())


def test_preemption_waits_for_the_optimizer_step(tmp_path, outer_handler):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Preempted) as preempted:
        _run(BackupAndRestore(backup_dir, preemption_signals=["SIGUSR1"]), extra=[SignalAt(10, signal.SIGUSR1)],
             accumulate_steps=2)
    assert preempted.value.code == 138
    # The 10th batch is epoch 2's third, a micro-batch: the backup follows the 4th, an optimizer step.
    assert sorted(backup_dir.glob("backup-*.zip"))[-1].name == "backup-000001-000000004.zip"
    _assert_same(_run(BackupAndRestore(backup_dir), accumulate_steps=2), _run(accumulate_steps=2))


def test_preemption_after_the_last_step_keeps_the_finished_run(tmp_path, outer_handler):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Preempted):
        _run(BackupAndRestore(backup_dir), extra=[SignalAt(None)])
    assert backup_dir.exists()  # not deleted, although fit() had ended: running the script again returns at once
    counter = SignalAt(10**9)
    _assert_same(_run(BackupAndRestore(backup_dir), extra=[counter]), _run())
    assert counter.seen == 0 and not backup_dir.exists()


def test_handlers_are_ember_s_only_while_fit_runs(tmp_path, outer_handler):
    during = SignalAt(10**9)
    with pytest.raises(Interrupt):
        _run(BackupAndRestore(tmp_path / "backup"), interrupt_at=5, extra=[during])
    assert outer_handler not in during.handlers and len(during.handlers) == 1
    assert signal.getsignal(signal.SIGTERM) is outer_handler  # restored after an exception too
    untouched = SignalAt(10**9)
    _run(BackupAndRestore(tmp_path / "backup", preemption_signals=None), extra=[untouched])
    assert untouched.handlers == {outer_handler}
    assert outer_handler.received == []


def test_data_workers_leave_the_warning_to_the_training_process(tmp_path, outer_handler):
    """Slurm signals every process of a job step. A DataLoader worker forked during fit() that died
    on the warning (SIGUSR1, whose default action ends a process) would make torch stop the
    training process with an error before its backup. The training process here gets SIGUSR2."""
    workers = []

    def signal_every_process(batch, logs):
        if batch == 2:
            workers.extend(multiprocessing.active_children())  # the loader's worker
            for worker in workers:
                os.kill(worker.pid, signal.SIGUSR1)
            signal.raise_signal(signal.SIGUSR2)
            time.sleep(0.5)  # time for a worker to die, and torch's SIGCHLD handler to raise
            assert workers and all(worker.is_alive() for worker in workers)

    x = torch.rand(64, 6)
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0.5).long()), batch_size=8, num_workers=1,
                        multiprocessing_context="fork")
    model = ember.Sequential([layers.Dense(4), layers.Dense(2)])
    model.compile("adamw", "cross_entropy")
    backup = BackupAndRestore(tmp_path, preemption_signals=["SIGUSR1", "SIGUSR2"])
    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL), signal.signal(signal.SIGUSR2, outer_handler)
    try:
        with pytest.raises(Preempted):
            model.fit(loader, epochs=1, verbose=0,
                      callbacks=[LambdaCallback(on_train_batch_end=signal_every_process), backup])
    finally:
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGUSR2, previous[1])


def test_fit_outside_the_main_thread_warns_and_trains(tmp_path):
    during, caught, results = SignalAt(10**9), [], []

    def train():
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            results.append(_run(BackupAndRestore(tmp_path / "backup"), extra=[during]))
        caught.extend(str(w.message) for w in seen)

    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    assert any("outside the main thread" in message for message in caught), caught
    assert during.handlers == {signal.getsignal(signal.SIGTERM)}  # nothing was installed
    _assert_same(results[0], _run())


@pytest.fixture
def no_process_group():
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def test_fsdp_backups_are_shards_and_resume_bit_identical(tmp_path, no_process_group):
    """FSDP without a launcher is a group of one: the sharded path (DCP), in one process."""
    reference = _run(strategy="fsdp")
    resumed = _interrupted_then_resumed(tmp_path, 10, save_freq=3, delete_checkpoint=False, strategy="fsdp")
    _assert_same(resumed, reference)
    names = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert names == [f"backup-{position}.{kind}" for position in ("000002-000000004", "000003-000000000")
                     for kind in ("shards", "zip")]  # the newest 2 (keep=2), each a zip and its shards
    _run(BackupAndRestore(tmp_path / "backup"), strategy="fsdp")  # finished: restored, then deleted
    assert not (tmp_path / "backup").exists()  # zips and shards


def test_fsdp_run_preempted_backs_up_its_shards_and_resumes_bit_identical(tmp_path, no_process_group, outer_handler):
    backup_dir = tmp_path / "backup"
    with pytest.raises(Preempted):
        _run(BackupAndRestore(backup_dir), extra=[SignalAt(10)], strategy="fsdp")
    assert sorted(p.name for p in backup_dir.glob("backup-000001-000000003.*")) == \
        ["backup-000001-000000003.shards", "backup-000001-000000003.zip"]
    _assert_same(_run(BackupAndRestore(backup_dir), strategy="fsdp"), _run(strategy="fsdp"))


def test_fsdp_backup_with_missing_shards_is_set_aside(tmp_path, no_process_group):
    reference = _run(strategy="fsdp")
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupt):
        _run(BackupAndRestore(backup_dir, save_freq=3), interrupt_at=10, strategy="fsdp")
    newest = sorted(backup_dir.glob("backup-*.zip"))[-1]
    shutil.rmtree(newest.with_suffix(".shards"))
    (backup_dir / "backup-000009-000000000.shards").mkdir()  # shards whose zip was never written
    with pytest.warns(RuntimeWarning, match="which are missing"):
        resumed = _run(BackupAndRestore(backup_dir, delete_checkpoint=False), strategy="fsdp")
    _assert_same(resumed, reference)
    assert (backup_dir / (newest.name + ".corrupt")).exists()
    assert not (backup_dir / "backup-000009-000000000.shards").exists()


def test_fsdp_run_refuses_an_unsharded_backup(tmp_path, no_process_group):
    with pytest.raises(Interrupt):
        _run(BackupAndRestore(tmp_path / "backup"), interrupt_at=8)
    with pytest.raises(ValueError, match="not FSDP-sharded, and this one is"):
        _run(BackupAndRestore(tmp_path / "backup"), strategy="fsdp")
