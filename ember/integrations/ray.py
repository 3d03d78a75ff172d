"""Ray Train: a plain `fit()` script as the training function of a `ray.train.torch.TorchTrainer`.

Ray starts the workers and their process group; `fit(strategy="ddp")` finds that group and uses it
(ember/distributed/environment.py). `RayTrainCheckpoint` connects fit to Ray's fault tolerance:
each epoch it backs the run up (BackupAndRestore: the full training state, RNG moments included)
and reports the epoch's logs to `ray.train.report` with that backup as the `ray.train.Checkpoint`;
when Ray restarts a failed worker group, `ray.train.get_checkpoint()` hands the newest one back and
the run continues from it exactly as BackupAndRestore resumes.

    def train_loop(config):
        model = make_model()
        model.compile("adamw", "cross_entropy", strategy="ddp")
        model.fit(x, y, epochs=10, callbacks=[RayTrainCheckpoint()])

    TorchTrainer(train_loop, scaling_config=ScalingConfig(num_workers=4),
                 run_config=RunConfig(failure_config=FailureConfig(max_failures=3))).fit()

Ray is an optional extra: `pip install 'ember[ray]'`.
"""
import shutil
import tempfile
from pathlib import Path

from ember.train.backup_folder import shards_of
from ember.train.callbacks.backup_and_restore import BackupAndRestore


class RayTrainCheckpoint(BackupAndRestore):
    """Report each epoch's logs and backup to Ray Train; resume from `ray.train.get_checkpoint()`.

    Args:
        local_dir: where backups are written before Ray copies them to its storage (default: a new
            temporary folder per worker). A sharded (FSDP) run writes shards from every worker: give
            a folder all workers share.
        keep: local backups kept (Ray keeps its own copies, per its CheckpointConfig).
    """

    def __init__(self, local_dir=None, keep=1):
        super().__init__(local_dir or tempfile.mkdtemp(prefix="ember-ray-"), save_freq="epoch", keep=keep,
                         delete_checkpoint=False)

    def on_train_begin(self, logs=None):
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None and self.trainer.strategy.is_main:
            with checkpoint.as_directory() as reported:  # Ray's copy: only the main process restores files
                for backup in Path(reported).iterdir():
                    target = self.backup_dir / backup.name
                    (shutil.copytree if backup.is_dir() else shutil.copyfile)(backup, target)
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        import ray.train

        super().on_epoch_end(epoch, logs)
        metrics = {"epoch": epoch + 1, **{name: float(value) for name, value in (logs or {}).items()}}
        newest = self.folder.backups()[-1:] if self.trainer.strategy.is_main else []
        if not newest:  # every worker reports (Ray's report is a barrier); only the main one has the files
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="ember-ray-report-") as staging:
            # A copy: Ray uploads the folder during report, and the next epoch replaces the backup.
            for path in (newest[0], shards_of(newest[0])):
                if path.is_dir():
                    shutil.copytree(path, Path(staging) / path.name)
                elif path.exists():
                    shutil.copyfile(path, Path(staging) / path.name)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(staging))
