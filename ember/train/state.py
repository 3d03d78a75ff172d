"""`TrainState`: what a run changes as it trains, as one `state_dict()` for backups.

The trainer owns the objects (model, optimizer, LR schedule, gradient scaler, metrics, loop
position, data order, running sums); `TrainState` is the one place that knows how to save them
and put them back, in the shape of `torch.distributed.checkpoint`'s `Stateful`. What is the same
in every process (`state_dict`) and what each process has of its own (`process_state_dict`:
the data loader's generators and the running sums of its share) are kept apart, so a
distributed run writes the first once and gathers the second. An FSDP-sharded model's weights
and optimizer state are saved by every rank into shards instead (`ember.distributed.checkpoint`).
"""
import torch

from ember.distributed import is_sharded
from ember.train.checkpoint import loader_generators


class TrainState:
    def __init__(self, trainer):
        self.trainer = trainer

    @property
    def sharded(self) -> bool:
        return is_sharded(self.trainer.model)

    def state_dict(self) -> dict:
        t = self.trainer
        return {
            "model": None if self.sharded else t.model.state_dict(),
            "optimizer": None if self.sharded else t.compiled.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict() if t.scheduler is not None else None,
            "scaler": t.precision.scaler.state_dict(),
            "data_seed": getattr(t.train_data, "seed", None),
        }

    def load_state_dict(self, state: dict, shards=None) -> None:
        """The backup's callers know the loop position (the trainer resumes it itself: `Trainer.resume_at`).
        `shards`: the folder of a sharded backup's weights and optimizer state."""
        t = self.trainer
        if shards is not None:  # resharded to this run's processes; refuses another model before loading
            from ember.distributed.checkpoint import load_checkpoint

            load_checkpoint(t.model, shards, t.compiled.optimizer)
        else:
            t.model.load_state_dict(state["model"])
            t.compiled.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None and t.scheduler is not None:
            t.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] and t.precision.scaler.is_enabled():
            t.precision.scaler.load_state_dict(state["scaler"])
        if state["data_seed"] is not None and hasattr(t.train_data, "seed"):
            t.train_data.seed = state["data_seed"]

    def process_state_dict(self, running: bool) -> dict:
        """This process's data order and, mid-epoch (`running`), the running sums of its share."""
        return {"generators": self.generator_states(), "running": self.trainer.running_state() if running else None}

    def generator_states(self) -> dict:
        return {role: g.get_state() for role, g in loader_generators(self.trainer.train_data).items()}

    def load_generator_states(self, states: dict) -> None:
        for role, generator in loader_generators(self.trainer.train_data).items():
            if role in states:
                generator.set_state(states[role])

    def mismatch(self, state: dict) -> list:
        """How an unsharded backup's model and optimizer differ from this run's ([] if they fit)."""
        if self.sharded:
            return ["it was written by a run that was not FSDP-sharded, and this one is: resume with the strategy "
                    "it was written with"]
        own, saved = self.trainer.model.state_dict(), state["model"]
        problems = [f"missing: {', '.join(sorted(set(own) - set(saved)))}" if set(own) - set(saved) else "",
                    f"unexpected: {', '.join(sorted(set(saved) - set(own)))}" if set(saved) - set(own) else ""]
        problems += [f"{k}: backup {tuple(saved[k].shape)} vs model {tuple(own[k].shape)}"
                     for k in sorted(set(own) & set(saved)) if tuple(saved[k].shape) != tuple(own[k].shape)]
        groups = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
        now = [len(g["params"]) for g in self.trainer.compiled.optimizer.param_groups]
        if groups != now:
            problems.append(f"optimizer parameter groups: backup {groups} vs now {now}")
        return [p for p in problems if p]

    def all_finite(self) -> bool:
        """Whether this process's weights, buffers and optimizer state are finite (its shards under FSDP)."""
        model, optimizer = self.trainer.model, self.trainer.compiled.optimizer
        tensors = [*model.parameters(), *model.buffers()]
        tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
        local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
        return all(bool(torch.isfinite(t).all()) for t in local if t.is_floating_point())
