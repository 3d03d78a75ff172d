"""Back a run up as it goes; after a crash, the same script continues exactly where it was.

`fit(..., resume=dir)` adds `BackupAndRestore(dir)`. A backup (`ember.train.checkpoint`)
holds the model, optimizer, LR schedule, gradient scaler, every callback's `state_dict()`
(History, EarlyStopping, ReduceLROnPlateau, ModelCheckpoint, CSVLogger...), the loop
position, the data order (the shuffle seed, the DataLoader's generators), every RNG
state, and mid-epoch the running loss and metric sums, so the epoch's logged loss and
the final weights equal those of a run that was never interrupted.

Mid-epoch, the loader's order and the global RNGs are needed at two moments: the data
order is drawn when the epoch starts (a DataLoader without its own generator draws it
from the global RNG), dropout continues from where the backup was taken. So the RNG
state of the epoch's start is restored when the resumed epoch begins and the state of
the backup moment just before its first batch.

This callback runs after all others (`runs_last`): it restores their state after their
`on_train_begin` has reset it, and saves it after their `on_epoch_end` has updated it.
"""
import os
import re
import shutil
import warnings
from pathlib import Path

import torch

from ember.distributed import is_sharded
from ember.train.callbacks.base import Callback
from ember.train.checkpoint import BackupFileError, check_backup_state, loader_generators, read_backup, \
    rng_state, set_rng_state, write_backup

_NAME = re.compile(r"backup-(\d{6})-(\d{9})\.zip")


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
            restores the finished run and returns at once.

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
        self.backup_dir = Path(backup_dir)
        self.save_freq, self.keep, self.delete_checkpoint = save_freq, keep, delete_checkpoint

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        self._since_backup, self._due, self._last_position = 0, False, None
        self._skipped_nonfinite = False
        self._epoch_start = None  # RNG and loader states when this epoch began (mid-epoch backups)
        self._resume_epoch = None  # what a mid-epoch backup restores when its epoch begins
        self._rng_at_backup = None  # ... and just before the epoch's first batch
        if self._is_main:
            self._remove_temporaries()
        state, path = self._agreed_backup()
        if state is not None:
            self._restore(state)
            if self.params.get("verbose") and self._is_main:
                epoch, step = state["position"]["epoch"], state["position"]["step"]
                print(f"Resuming from {path}: epoch {epoch + 1}" + (f", batch {step}" if step else ""))

    def on_epoch_begin(self, epoch, logs=None):
        if self._resume_epoch is not None:
            self._epoch_start = self._resume_epoch["epoch_start"]
            set_rng_state(self._epoch_start["rng"])
            self.trainer.load_running_state(self._resume_epoch["running"])
            self._rng_at_backup, self._resume_epoch = self._resume_epoch["rng"], None
        elif self.save_freq != "epoch":
            self._epoch_start = {"rng": rng_state(), "generators": self._generator_states()}

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
            if self._is_main:
                kept = self._backups()
                warnings.warn(f"training stopped on a non-finite loss: the backups in {self.backup_dir} are kept "
                              + (f"(newest: {kept[-1].name}, the last state with finite weights); fit(..., "
                                 f"resume=...) continues from it, with a lower learning rate or clip_grad_norm= "
                                 "to avoid the same divergence" if kept else "(none was taken before it)"),
                              RuntimeWarning, stacklevel=3)
            return
        if self.delete_checkpoint:
            if self._is_main:
                for path in self._backups():  # oldest first: an interruption here leaves the newest
                    _remove_backup(path)
                if self.backup_dir.is_dir() and not any(self.backup_dir.iterdir()):
                    self.backup_dir.rmdir()
        elif self._last_position != (self.trainer.epoch + 1, 0):
            self._backup(self.trainer.epoch + 1, 0, finished=True)

    # ------------------------------------------------------------------ saving
    def _backup(self, epoch, step, mid_epoch=False, finished=False):
        self._since_backup, self._due, self._last_position = 0, False, (epoch, step)
        trainer = self.trainer
        # A diverged state is no state to resume from, and rotating it in would push out the good ones.
        if trainer.diverged or not _all_finite(self.model, trainer.compiled.optimizer):
            if not self._skipped_nonfinite and self._is_main:
                warnings.warn(f"not backing up epoch {epoch}, batch {step}: the weights or optimizer state are "
                              "not finite (NaN or inf); the earlier backups are kept", RuntimeWarning, stacklevel=4)
            self._skipped_nonfinite = True
            self.model.stop_training = True
            return
        path = self.backup_dir / f"backup-{epoch:06d}-{step:09d}.zip"
        sharded = is_sharded(self.model)
        if sharded:  # every rank writes its shard of the weights and optimizer state (never gathered)
            from ember.distributed.checkpoint import save_checkpoint

            save_checkpoint(self.model, _shards_of(path), trainer.compiled.optimizer)
        # What differs between processes (RNG streams, running sums of their shares) is gathered
        # to rank 0, which writes the one file; the model and optimizer are the same everywhere.
        ranks = _gather_to_rank0({
            "rng": rng_state(),
            # Mid-epoch: the loader restarts the epoch, so it needs the generators of the epoch's start.
            "generators": self._epoch_start["generators"] if mid_epoch else self._generator_states(),
            "epoch_start_rng": self._epoch_start["rng"] if mid_epoch else None,
            "running": trainer.running_state() if mid_epoch else None,
        })
        if not self._is_main:
            return
        state = {
            "position": {"epoch": epoch, "step": step, "global_step": trainer.global_step, "finished": finished},
            "params": {k: self.params.get(k) for k in ("epochs", "steps", "batch_size")},
            # A sharded run's zip names its shards' directory; the zip, written last, completes the backup.
            "shards": _shards_of(path).name if sharded else None,
            "model": None if sharded else self.model.state_dict(),
            "optimizer": None if sharded else trainer.compiled.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
            "scaler": trainer.precision.scaler.state_dict(),
            "callbacks": {key: cb.state_dict() for key, cb in self._other_callbacks().items()},
            "data_seed": getattr(trainer.train_data, "seed", None),
            "ranks": ranks,
        }
        write_backup(path, state)
        for old in self._backups()[:-self.keep]:
            if old != path:
                _remove_backup(old)

    def _generator_states(self):
        return {role: g.get_state() for role, g in loader_generators(self.trainer.train_data).items()}

    # ------------------------------------------------------------------ restoring
    def _restore(self, state):
        trainer, model = self.trainer, self.model
        self._check_fits(state)
        if state.get("shards"):  # resharded to this run's processes; refuses another model before loading
            from ember.distributed.checkpoint import load_checkpoint

            load_checkpoint(model, self.backup_dir / state["shards"], trainer.compiled.optimizer)  # checked name
        else:
            model.load_state_dict(state["model"])
            trainer.compiled.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None and trainer.scheduler is not None:
            trainer.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] and trainer.precision.scaler.is_enabled():
            trainer.precision.scaler.load_state_dict(state["scaler"])
        callbacks = self._other_callbacks()
        for key, cb_state in state["callbacks"].items():
            if key in callbacks:
                callbacks[key].load_state_dict(cb_state)
        missing = sorted(set(callbacks) - set(state["callbacks"]))
        if missing:
            warnings.warn(f"callbacks not in the backup start afresh: {', '.join(missing)}", RuntimeWarning,
                          stacklevel=3)
        if state["data_seed"] is not None and hasattr(trainer.train_data, "seed"):
            trainer.train_data.seed = state["data_seed"]
        mine = self._rank_state(state["ranks"])
        for role, generator in loader_generators(trainer.train_data).items():
            if role in mine["generators"]:
                generator.set_state(mine["generators"][role])
        set_rng_state(mine["rng"])

        position = state["position"]
        trainer.resume_at(position)
        if mine["running"] is not None:
            self._resume_epoch = {"epoch_start": {"rng": mine["epoch_start_rng"], "generators": mine["generators"]},
                                  "running": mine["running"], "rng": mine["rng"]}
        self._last_position = (position["epoch"], position["step"])

    def _check_fits(self, state):
        """Refuse a backup of another model before changing anything."""
        if state.get("shards"):
            self._check_steps(state)  # the model and optimizer: load_checkpoint checks them against its metadata
            return
        if is_sharded(self.model):
            raise ValueError(f"the backup in {self.backup_dir} was written by a run that was not FSDP-sharded, and "
                             "this one is: resume with the strategy it was written with, or start a new backup_dir")
        own = self.model.state_dict()
        saved = state["model"]
        problems = [f"missing: {', '.join(sorted(set(own) - set(saved)))}" if set(own) - set(saved) else "",
                    f"unexpected: {', '.join(sorted(set(saved) - set(own)))}" if set(saved) - set(own) else ""]
        problems += [f"{k}: backup {tuple(saved[k].shape)} vs model {tuple(own[k].shape)}"
                     for k in sorted(set(own) & set(saved)) if tuple(saved[k].shape) != tuple(own[k].shape)]
        groups = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
        now = [len(g["params"]) for g in self.trainer.compiled.optimizer.param_groups]
        if groups != now:
            problems.append(f"optimizer parameter groups: backup {groups} vs now {now}")
        problems = [p for p in problems if p]
        if problems:
            raise ValueError(f"the backup in {self.backup_dir} is of another model or optimizer: "
                             + " | ".join(problems)
                             + ". Resume with the same script, or point backup_dir/resume at a new directory.")
        self._check_steps(state)

    def _check_steps(self, state):
        saved_steps, steps = state["params"].get("steps"), self.params.get("steps")
        if saved_steps != steps:
            warnings.warn(f"the backup was taken with {saved_steps} batches per epoch, this run has {steps}: "
                          "the data changed, so the resumed run will not match an uninterrupted one",
                          RuntimeWarning, stacklevel=5)

    def _rank_state(self, ranks):
        world, rank = _world()
        if len(ranks) != world:
            warnings.warn(f"the backup was taken by {len(ranks)} processes, this run has {world}: the weights and "
                          "optimizer are restored, but the data split and RNG streams differ, so the run will not "
                          "match an uninterrupted one", RuntimeWarning, stacklevel=4)
        return ranks[rank % len(ranks)]

    def _agreed_backup(self):
        """Rank 0 picks the newest readable backup (setting corrupt ones aside); every process loads it."""
        state, path = self._newest_readable() if self._is_main else (None, None)
        world, _ = _world()
        if world == 1:
            return state, path
        import torch.distributed as dist

        chosen = [str(path) if path is not None else None]
        dist.broadcast_object_list(chosen, src=0)
        if not self._is_main and chosen[0] is not None:
            path = Path(chosen[0])
            state = read_backup(path)
            check_backup_state(state, path)
        return state, path

    def _newest_readable(self):
        for path in reversed(self._backups()):
            try:
                state = read_backup(path)
                check_backup_state(state, path)  # also: shards can only be the zip's own sibling
                if state["shards"]:
                    _check_shards(path)
                return state, path
            except BackupFileError as error:
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                warnings.warn(f"{error}. Set it aside as {aside.name}; resuming from the previous backup.",
                              RuntimeWarning, stacklevel=3)
        return None, None

    # ------------------------------------------------------------------ files and helpers
    def _backups(self):
        """This run's backup files, oldest first."""
        if not self.backup_dir.is_dir():
            return []
        found = [(tuple(map(int, m.groups())), p) for p in self.backup_dir.iterdir()
                 if (m := _NAME.fullmatch(p.name))]
        return [p for _, p in sorted(found)]

    def _remove_temporaries(self):
        # A kill between writing and renaming leaves ember.io's temporary file behind; one between
        # a sharded backup's shards and its zip leaves shards that no backup names.
        if self.backup_dir.is_dir():
            for path in self.backup_dir.glob(".backup-*.zip.*.tmp"):
                path.unlink(missing_ok=True)
            for shards in self.backup_dir.glob("backup-*.shards*"):
                if shards.suffix == ".partial" or not shards.with_suffix(".zip").exists():
                    shutil.rmtree(shards, ignore_errors=True)

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

    @property
    def _is_main(self):
        strategy = getattr(self.trainer, "strategy", None)
        return strategy is None or strategy.is_main


def _world():
    """(number of processes, this one's rank) of a DDP/FSDP run; (1, 0) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _gather_to_rank0(mine):
    """Every process's `mine`, in rank order, on rank 0 (an in-job exchange, not a file)."""
    world, rank = _world()
    if world == 1:
        return [mine]
    import torch.distributed as dist

    gathered = [None] * world if rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    return gathered


def _all_finite(model, optimizer) -> bool:
    """Whether every weight, buffer and optimizer state tensor is finite, agreed by every process
    (an FSDP rank sees only its shards, and the backup is a collective)."""
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
    finite = torch.tensor(all(bool(torch.isfinite(t).all()) for t in local if t.is_floating_point()))
    world, _ = _world()
    if world > 1:
        import torch.distributed as dist

        finite = finite.to(torch.int32)
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite)


def _check_shards(path: Path) -> None:
    """A sharded backup's folder must exist and its metadata be readable without running code."""
    from ember.distributed.checkpoint import CheckpointFileError, read_checkpoint_metadata

    try:
        read_checkpoint_metadata(_shards_of(path))
    except FileNotFoundError:
        raise BackupFileError(f"{path} names the shards {_shards_of(path).name}, which are missing") from None
    except CheckpointFileError as error:
        raise BackupFileError(f"{path}'s shards are unusable: {error}") from None


def _shards_of(path: Path) -> Path:
    return path.with_suffix(".shards")


def _remove_backup(path: Path) -> None:
    """The zip first: a backup whose shards are gone must not stay behind looking complete."""
    path.unlink(missing_ok=True)
    shutil.rmtree(_shards_of(path), ignore_errors=True)
