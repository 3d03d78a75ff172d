"""Back a run up as it goes; after a crash, the same script continues exactly where it was.

`fit(..., resume=dir)` adds `BackupAndRestore(dir)`. This callback decides when to back up
and what goes with the trainer's `TrainState` (which saves and restores itself, loop position
and RNG moments included): every other callback's `state_dict()`. `BackupFolder` handles the
files; the strategy coordinates the processes.

This callback runs after all others (`runs_last`): it restores their state after their
`on_train_begin` has reset it, and saves it after their `on_epoch_end` has updated it.

Preemption (ember/train/preemption.py): while fit() runs, the `preemption_signals` are only
recorded; after each optimizer step the processes agree on the highest signal any of them received
(one all-reduce of an integer; none in one process), and if there is one, all back up, rank 0
requeues a Slurm job, and fit() raises `Preempted`, which exits with 128 + the signal's number.
"""
import signal
import sys
import warnings

from ember.train.backup_folder import BackupFolder, shards_of
from ember.train.callbacks.base import Callback
from ember.train.preemption import (PreemptionNotice, Preempted, exit_code, parse_signals, requeue_slurm_job,
                                    slurm_job_to_requeue)


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
        preemption_signals: the signals on which fit() backs up after the optimizer step in progress
            and exits with 128 + the signal's number (143 for SIGTERM): "auto" (default), SIGUSR1 and
            SIGTERM in a Slurm job (SLURM_JOB_ID set), SIGTERM elsewhere; a list of signals (numbers
            or names); or None to leave every signal as it is. Under Slurm a signal other than SIGTERM
            and SIGINT (which scancel and Ctrl-C send) also requeues the job (`scontrol requeue`,
            from rank 0). Caught only while fit() runs, in the main thread; the same on every process.

    Resuming needs the same script: the same model, optimizer, data and callbacks.
    """

    runs_last = True

    def __init__(self, backup_dir, save_freq="epoch", keep=2, delete_checkpoint=True, preemption_signals="auto"):
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
        self.preemption_signals = parse_signals(preemption_signals)

    def on_train_begin(self, logs=None):
        self.state, self.strategy = self.trainer.state, self.trainer.strategy
        self._since_backup, self._due, self._last_position, self._skipped_nonfinite = 0, False, None, False
        self._notice = self.trainer.fit_cleanup.enter_context(PreemptionNotice(self.preemption_signals))
        self._stop_signal = 0  # the preemption signal the processes agreed to stop on
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

    def on_train_batch_end(self, batch, logs=None):
        self._since_backup += 1
        step, steps = batch + 1, self.params.get("steps")
        if step % self.state.recipe.accumulate_steps and step != steps:
            return  # partial gradients are not saved: wait for the optimizer step
        self._agree_on_preemption()
        epoch_ends_next = step == steps or self.model.stop_training  # back up there, with its logs
        if self._stop_signal and not epoch_ends_next:
            self._preempt()
        if self.save_freq == "epoch" or self._since_backup < self.save_freq:
            return
        if epoch_ends_next:
            self._due = True
            return
        self._backup()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch" or self._due:
            self._backup()
        if self._stop_signal:
            self._preempt()

    def on_train_end(self, logs=None):
        self._agree_on_preemption()  # a signal in the last step, validation or after an early stop
        if self._stop_signal and not (self.trainer.diverged or self._skipped_nonfinite):
            self._preempt()  # backs up the finished run (not deleted): the requeued run returns at once
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
        elif self._last_position != _where(self.state.position()):
            self._backup()  # the finished run's state, so running the script again returns at once

    def _backup(self):
        position = self.state.position()
        self._since_backup, self._due, self._last_position = 0, False, _where(position)
        # A diverged state is no state to resume from, and rotating it in would push out the good ones.
        if self.trainer.diverged or not self.strategy.all_true(self.state.all_finite()):
            if not self._skipped_nonfinite and self.strategy.is_main:
                warnings.warn(f"not backing up epoch {position['epoch']}, batch {position['step']}: the weights or "
                              "optimizer state are not finite (NaN or inf); the earlier backups are kept",
                              RuntimeWarning, stacklevel=4)
            self._skipped_nonfinite = self.model.stop_training = True
            return
        path = self.folder.path_for(*self._last_position)
        if self.state.sharded:  # every rank writes its shard of the weights and optimizer state (never gathered)
            self.state.save_shards(shards_of(path))
        # What differs between processes (RNG streams, data order, running sums of their shares) is
        # gathered to the main process, which writes the one file.
        ranks = self.strategy.gather_to_main(self.state.process_state_dict())
        if not self.strategy.is_main:
            return
        self.folder.write(path, {
            **self.state.state_dict(),
            "params": {k: self.params.get(k) for k in ("epochs", "steps", "batch_size")},
            "shards": shards_of(path).name if self.state.sharded else None,  # the zip, written last, names them
            "callbacks": {key: cb.state_dict() for key, cb in self.trainer.callbacks.by_key(excluding=self).items()},
            "ranks": ranks,
        })
        self.folder.keep_newest(self.keep, path)

    def _agree_on_preemption(self):
        # Every process takes part, whether or not its handlers could be installed, so that all
        # stop at the same step whichever of them the signal reached.
        if self.preemption_signals and not self._stop_signal:
            self._stop_signal = self.strategy.reduce_max(self._notice.received)

    def _preempt(self):
        if self._last_position != _where(self.state.position()):
            self._backup()
        # The main process writes the backup's file and requeues before the others hear what it did:
        # no process leaves while the backup is incomplete.
        report = self.strategy.broadcast_from_main(self._report_preemption() if self.strategy.is_main else None)
        raise Preempted(self._stop_signal, report)

    def _report_preemption(self) -> str:
        backup = self.folder.path_for(*self._last_position)
        report = [f"{signal.Signals(self._stop_signal).name} received: " + (
            f"backed up to {backup}" if backup.exists() else
            "not backed up (the state is not finite), the earlier backups are kept")]
        if job := slurm_job_to_requeue(self._stop_signal):
            report.append(requeue_slurm_job(job))
        report.append(f"exiting with code {exit_code(self._stop_signal)}")
        report = "; ".join(report)
        print(f"ember: {report}", file=sys.stderr, flush=True)
        return report

    def _restore(self, state):
        if state["params"].get("steps") != self.params.get("steps"):
            _warn(f"the backup was taken with {state['params'].get('steps')} batches per epoch, this run has "
                  f"{self.params.get('steps')}: the data changed, so the resumed run will not match an "
                  "uninterrupted one")
        # Refused before anything changes if it is another model's or optimizer's.
        self.state.load_state_dict(state, shards=self.backup_dir / state["shards"] if state["shards"] else None,
                                   source=f"the backup in {self.backup_dir}")
        callbacks = self.trainer.callbacks.by_key(excluding=self)
        for key, cb_state in state["callbacks"].items():
            if key in callbacks:
                callbacks[key].load_state_dict(cb_state)
        if missing := sorted(set(callbacks) - set(state["callbacks"])):
            _warn(f"callbacks not in the backup start afresh: {', '.join(missing)}")
        ranks, world = state["ranks"], self.strategy.world_size
        if len(ranks) != world:
            _warn(f"the backup was taken by {len(ranks)} processes, this run has {world}: the weights and optimizer "
                  "are restored, but the data split and RNG streams differ, so the run will not match an "
                  "uninterrupted one")
        self.state.load_process_state_dict(ranks[self.strategy.rank % len(ranks)])
        self._last_position = _where(state["position"])


def _where(position: dict) -> tuple:
    return position["epoch"], position["step"]


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=5)
