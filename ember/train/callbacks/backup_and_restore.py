"""Back a run up as it goes; after a crash, the same script continues exactly where it was.

`fit(..., resume=dir)` adds `BackupAndRestore(dir)`. This callback decides when to back up
and what goes with the training state: the trainer's `TrainState` (model, optimizer, LR
schedule, gradient scaler, data order, mid-epoch running sums), every other callback's
`state_dict()`, the loop position and every RNG state. `BackupFolder` handles the files.

Mid-epoch, the loader's order and the global RNGs are needed at two moments: the data order is
drawn when the epoch starts (a DataLoader without its own generator draws it from the global
RNG), dropout continues from where the backup was taken. So the RNG state of the epoch's start
is restored when the resumed epoch begins and the state of the backup moment just before its
first batch.

This callback runs after all others (`runs_last`): it restores their state after their
`on_train_begin` has reset it, and saves it after their `on_epoch_end` has updated it.
"""
import warnings

from ember.train.backup_folder import BackupFolder, shards_of
from ember.train.callbacks.base import Callback
from ember.train.checkpoint import rng_state, set_rng_state
from ember.train.state import TrainState


class BackupAndRestore(Callback):
    """Keras' BackupAndRestore, made exact.

    Args:
        backup_dir: a directory for this run's backups only.
        save_freq: "epoch" (default), or an int N: back up every N batches. With gradient
            accumulation, the backup waits for the next optimizer step (partial gradients are
            not saved); a backup due on an epoch's last batch is taken at the epoch's end.
        keep: how many of the newest backups to keep (at least 1). With 2 or more, a newest
            backup that cannot be read is set aside (renamed `*.corrupt`, with a warning) and
            the run continues from the previous one.
        delete_checkpoint: as Keras, when fit() returns normally (all epochs done, or stopped by
            a callback such as EarlyStopping), delete the backups, so running the script again
            trains from the start. With False the last state stays: running the script again
            restores the finished run and returns at once. Backups are never deleted, nor is a
            non-finite state backed up, when the loss turns NaN or inf.

    Resuming needs the same script: the same model, optimizer, data and callbacks.
    """

    runs_last = True

    def __init__(self, backup_dir, save_freq="epoch", keep=2, delete_checkpoint=True):
        if not backup_dir:
            raise ValueError("BackupAndRestore needs a backup_dir (a directory for this run's backups)")
        if save_freq != "epoch" and not (isinstance(save_freq, int) and not isinstance(save_freq, bool)
                                         and save_freq > 0):
            raise ValueError(f"save_freq must be 'epoch' or a positive number of batches, got {save_freq!r}")
        if not (isinstance(keep, int) and keep >= 1):
            raise ValueError(f"keep must be a positive integer (backups to keep), got {keep!r}")
        self.folder = BackupFolder(backup_dir)
        self.backup_dir = self.folder.directory
        self.save_freq, self.keep, self.delete_checkpoint = save_freq, keep, delete_checkpoint

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        self.state, self.strategy = TrainState(self.trainer), self.trainer.strategy
        self._since_backup, self._due, self._last_position, self._skipped_nonfinite = 0, False, None, False
        self._epoch_start = None  # RNG and loader states when this epoch began (mid-epoch backups)
        self._resume_epoch = None  # what a mid-epoch backup restores when its epoch begins
        self._rng_at_backup = None  # ... and just before the epoch's first batch
        if self.strategy.is_main:
            self.folder.remove_temporaries()
        # The main process picks the newest usable backup (setting others aside); every process loads it.
        state, path = self.folder.newest_readable() if self.strategy.is_main else (None, None)
        path = self.strategy.broadcast_from_main(path)
        if path is not None:
            self._restore(state if state is not None else self.folder.read(path))
            if self.params.get("verbose") and self.strategy.is_main:
                epoch, step = self._last_position
                print(f"Resuming from {path}: epoch {epoch + 1}" + (f", batch {step}" if step else ""))

    def on_epoch_begin(self, epoch, logs=None):
        if self._resume_epoch is not None:
            self._epoch_start = self._resume_epoch["epoch_start"]
            set_rng_state(self._epoch_start["rng"])
            self.trainer.load_running_state(self._resume_epoch["running"])
            self._rng_at_backup, self._resume_epoch = self._resume_epoch["rng"], None
        elif self.save_freq != "epoch":
            self._epoch_start = {"rng": rng_state(), "generators": self.state.generator_states()}

    def on_train_batch_begin(self, batch, logs=None):
        if self._rng_at_backup is not None:
            set_rng_state(self._rng_at_backup)
            self._rng_at_backup = None

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._since_backup += 1
        step = batch + 1
        at_optimizer_step = step % self.trainer.compiled.accumulate_steps == 0
        if self._since_backup < self.save_freq or not (at_optimizer_step or step == self.params.get("steps")):
            return
        if step == self.params.get("steps") or self.model.stop_training:
            self._due = True  # the epoch's end comes next: back up there, with its logs
            return
        self._backup(self.trainer.epoch, step, mid_epoch=True)

    def on_epoch_end(self, epoch, logs=None):
        if self._rng_at_backup is not None:  # an iterable of unknown length had no batch left
            set_rng_state(self._rng_at_backup)
            self._rng_at_backup = None
        if self.save_freq == "epoch" or self._due:
            self._backup(epoch + 1, 0, finished=bool(self.model.stop_training))

    def on_train_end(self, logs=None):
        if self.trainer.diverged or self._skipped_nonfinite:
            kept = self.folder.backups()
            if self.strategy.is_main:
                warnings.warn(f"training stopped on a non-finite loss: the backups in {self.backup_dir} are kept "
                              + (f"(newest: {kept[-1].name}, the last state with finite weights); fit(..., "
                                 f"resume=...) continues from it, with a lower learning rate or clip_grad_norm= "
                                 "to avoid the same divergence" if kept else "(none was taken before it)"),
                              RuntimeWarning, stacklevel=3)
        elif self.delete_checkpoint:
            if self.strategy.is_main:
                self.folder.remove_all()
        elif self._last_position != (self.trainer.epoch + 1, 0):
            self._backup(self.trainer.epoch + 1, 0, finished=True)

    # ------------------------------------------------------------------ saving and restoring
    def _backup(self, epoch, step, mid_epoch=False, finished=False):
        self._since_backup, self._due, self._last_position = 0, False, (epoch, step)
        # A diverged state is no state to resume from, and rotating it in would push out the good ones.
        if self.trainer.diverged or not self.strategy.all_true(self.state.all_finite()):
            if not self._skipped_nonfinite and self.strategy.is_main:
                warnings.warn(f"not backing up epoch {epoch}, batch {step}: the weights or optimizer state are "
                              "not finite (NaN or inf); the earlier backups are kept", RuntimeWarning, stacklevel=4)
            self._skipped_nonfinite = self.model.stop_training = True
            return
        path = self.folder.path_for(epoch, step)
        if self.state.sharded:  # every rank writes its shard of the weights and optimizer state (never gathered)
            from ember.distributed.checkpoint import save_checkpoint

            save_checkpoint(self.model, shards_of(path), self.trainer.compiled.optimizer)
        # What differs between processes (RNG streams, data order, running sums of their shares) is
        # gathered to the main process, which writes the one file.
        own = self.state.process_state_dict(running=mid_epoch)
        if mid_epoch:  # the loader restarts the epoch, so it needs the generators of the epoch's start
            own["generators"] = self._epoch_start["generators"]
        ranks = self.strategy.gather_to_main({**own, "rng": rng_state(),
                                              "epoch_start_rng": self._epoch_start["rng"] if mid_epoch else None})
        if not self.strategy.is_main:
            return
        self.folder.write(path, {
            **self.state.state_dict(),
            "position": {"epoch": epoch, "step": step, "global_step": self.trainer.global_step, "finished": finished},
            "params": {k: self.params.get(k) for k in ("epochs", "steps", "batch_size")},
            "shards": shards_of(path).name if self.state.sharded else None,  # the zip, written last, names them
            "callbacks": {key: cb.state_dict() for key, cb in self._other_callbacks().items()},
            "ranks": ranks,
        })
        self.folder.keep_newest(self.keep, path)

    def _restore(self, state):
        problems = [] if state["shards"] else self.state.mismatch(state)  # refused before anything changes
        if problems:
            raise ValueError(f"the backup in {self.backup_dir} is of another model or optimizer: "
                             + " | ".join(problems)
                             + ". Resume with the same script, or point backup_dir/resume at a new directory.")
        if state["params"].get("steps") != self.params.get("steps"):
            warnings.warn(f"the backup was taken with {state['params'].get('steps')} batches per epoch, this run has "
                          f"{self.params.get('steps')}: the data changed, so the resumed run will not match an "
                          "uninterrupted one", RuntimeWarning, stacklevel=4)
        self.state.load_state_dict(state, shards=self.backup_dir / state["shards"] if state["shards"] else None)
        callbacks = self._other_callbacks()
        for key, cb_state in state["callbacks"].items():
            if key in callbacks:
                callbacks[key].load_state_dict(cb_state)
        missing = sorted(set(callbacks) - set(state["callbacks"]))
        if missing:
            warnings.warn(f"callbacks not in the backup start afresh: {', '.join(missing)}", RuntimeWarning,
                          stacklevel=4)
        ranks, world = state["ranks"], self.strategy.world_size
        if len(ranks) != world:
            warnings.warn(f"the backup was taken by {len(ranks)} processes, this run has {world}: the weights and "
                          "optimizer are restored, but the data split and RNG streams differ, so the run will not "
                          "match an uninterrupted one", RuntimeWarning, stacklevel=4)
        mine = ranks[self.strategy.rank % len(ranks)]
        self.state.load_generator_states(mine["generators"])
        set_rng_state(mine["rng"])
        position = state["position"]
        self.trainer.resume_at(position)
        if mine["running"] is not None:
            self._resume_epoch = {"epoch_start": {"rng": mine["epoch_start_rng"], "generators": mine["generators"]},
                                  "running": mine["running"], "rng": mine["rng"]}
        self._last_position = (position["epoch"], position["step"])

    def _other_callbacks(self):
        """Every other callback of this fit(), keyed by class name (and #n for repeats)."""
        keyed, counts = {}, {}
        for cb in getattr(self.trainer, "callbacks", ()):
            if cb is self:
                continue
            name = type(cb).__name__
            counts[name] = counts.get(name, 0) + 1
            keyed[name if counts[name] == 1 else f"{name}#{counts[name]}"] = cb
        return keyed
