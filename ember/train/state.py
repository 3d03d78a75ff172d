"""`TrainState`: everything a training run changes, owned in one place, saved as one `state_dict()`.

The `Trainer` owns one, built from the frozen `TrainingRecipe` by `compile()`: the model, the
optimizer, the LR schedule, the gradient scaler, the metrics, the loop position (epoch, step in
the epoch, global step), the data order and this epoch's running sums. `state_dict()` /
`load_state_dict()` have the shape of `torch.distributed.checkpoint`'s `Stateful`.

What is the same in every process (`state_dict`) and what each process has of its own
(`process_state_dict`: RNG streams, the data loader's generators, the running sums of its
share) are kept apart, so a distributed run writes the first once and gathers the second. An
FSDP-sharded model's weights and optimizer state are written by every rank into a folder of
shards beside the backup instead (`save` / `load_state_dict(shards=)`), never gathered.

Resuming mid-epoch restores two RNG moments: the epoch's start (a DataLoader without its own
generator draws the epoch's order from the global RNG when its iterator starts) and the backup's
(dropout continues from there), set just before the first resumed batch (`batches`).
"""
import torch

from ember.distributed import is_sharded
from ember.train.checkpoint import loader_generators, rng_state, set_rng_state
from ember.train.compile import unbuilt_layers
from ember.train.optimizers import build_optimizer
from ember.train.outputs import resolve_outputs
from ember.train.precision import Precision


class TrainState:
    def __init__(self, model, recipe):
        self.model, self.recipe = model, recipe
        self.optimizer = None if unbuilt_layers(model) else self._new_optimizer()  # else on the first batch
        self.scheduler = None  # built by each fit() for its number of steps
        self.precision = Precision(recipe.precision, recipe.device)
        self.outputs = None  # how outputs map to losses and metrics (ember/train/outputs.py), from the first ones
        self.metrics = []  # the outputs' metrics (and with several outputs, each one's loss)
        self._resumed_metrics = None  # a backup's running metric sums, loaded once read_outputs() made the metrics
        self.channels_last = recipe.channels_last  # turned off if the model cannot run channels_last activations
        # The model .view()s channels_last activations: ember's forwards rewrite those views (fast_paths.py),
        # and the model is NCHW between fit/evaluate/predict calls, where its own code runs it.
        self.rewrites_views = False
        self.layout_checked = False
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.between_epochs = True  # past the last batch of `epoch` (or before the first epoch)
        self.finished = False  # fit() has returned, or a callback stopped it
        self.start_epoch, self.start_step = 0, 0  # where fit()'s loop starts
        self.train_data = None  # the batches of the current fit(): their order is state too
        self.loss_sum, self.seen = torch.zeros((), dtype=torch.float64), 0
        self._epoch_start = None  # RNG and loader generators when this epoch began (mid-epoch backups)
        self._resumed_epoch = None  # a mid-epoch backup's own state, applied when its epoch begins
        self._rng_before_batch = None  # ... and set just before that epoch's first resumed batch

    @property
    def scaler(self):
        return self.precision.scaler

    @property
    def sharded(self) -> bool:
        return is_sharded(self.model)

    def build_optimizer(self):
        """The optimizer, built now if layers had no parameters before their first call."""
        if self.optimizer is None:
            self.optimizer = self._new_optimizer()
        return self.optimizer

    def _new_optimizer(self):
        return build_optimizer(self.recipe.optimizer, self.model, fused=self.recipe.fused,
                               **self.recipe.optimizer_options)

    def read_outputs(self, outputs) -> None:
        """Map the model's outputs (from a first forward) to the compiled losses and metrics."""
        self.outputs = resolve_outputs(self.model, outputs, self.recipe)
        self.metrics = self.outputs.metrics
        for metric in self.metrics:
            metric.to(self.recipe.device)
        if self._resumed_metrics is not None:
            self._load_metrics(self._resumed_metrics)

    # ------------------------------------------------------------------ the loop
    def start_fit(self, train_data, initial_epoch: int) -> None:
        self.train_data, self.start_epoch, self.start_step, self.finished = train_data, initial_epoch, 0, False

    def first_epoch(self, epochs: int) -> int:
        """The epoch fit()'s loop starts at: a restored finished run runs none."""
        return epochs if self.finished else self.start_epoch

    def position(self) -> dict:
        """Where a run resumed from this state continues: the next batch is `step` of `epoch`."""
        after = self.between_epochs
        return {"epoch": self.epoch + 1 if after else self.epoch, "step": 0 if after else self.step_in_epoch,
                "global_step": self.global_step, "finished": self.finished or bool(self.model.stop_training)}

    def begin_epoch(self, epoch: int) -> None:
        """Called by the trainer as each epoch starts: resets (or, resuming, restores) the running sums."""
        self.epoch, self.between_epochs = epoch, False
        if self._resumed_epoch is not None:
            resumed, self._resumed_epoch = self._resumed_epoch, None
            self._epoch_start = resumed["epoch_start"]
            set_rng_state(self._epoch_start["rng"])
            self.load_running_state(resumed["running"])
            self._rng_before_batch = resumed["rng"]
            return
        self._epoch_start = {"rng": rng_state(), "generators": self.generator_states()}
        self.reset_running()

    def batches(self, epoch: int):
        """The batches of `epoch` from where it starts (mid-epoch when resuming)."""
        start, self.start_step = self.start_step, 0
        self.step_in_epoch = start
        batches = self.train_data.epoch(epoch, start)
        return batches if self._rng_before_batch is None else self._after_first_draw(batches)

    def _after_first_draw(self, batches):
        rng, self._rng_before_batch = self._rng_before_batch, None
        for batch in batches:  # the loader has drawn its order: dropout continues from the backup's moment
            if rng is not None:
                set_rng_state(rng)
                rng = None
            yield batch
        if rng is not None:  # an iterable of unknown length had no batch left
            set_rng_state(rng)

    # ------------------------------------------------------------------ running sums
    def reset_running(self) -> None:
        self.loss_sum = torch.zeros((), device=self.recipe.device, dtype=torch.float64)
        self.seen = 0
        for metric in self.metrics:
            metric.reset()

    def track(self, loss, per_output, outputs, targets, batch_size: int) -> None:
        """Add a batch's loss (and with several outputs each output's) and metrics to the running sums."""
        if batch_size == 0:  # a rank's share of a short last batch can be empty (distributed)
            return
        self.loss_sum += loss.detach().double() * batch_size
        self.seen += batch_size
        if targets is not None:
            self.outputs.update(outputs, targets, per_output, batch_size)

    def running_state(self) -> dict:
        """This epoch's running loss and metric sums so far (a mid-epoch backup saves them)."""
        return {"loss_sum": self.loss_sum.cpu(), "seen": self.seen,
                "metrics": [_to_device(m.state_dict(), "cpu") for m in self.metrics]}

    def load_running_state(self, state: dict) -> None:
        self.loss_sum, self.seen = state["loss_sum"].to(self.recipe.device), state["seen"]
        if self.outputs is None:  # a resumed run before its first batch
            self._resumed_metrics = state["metrics"]
        else:
            self._load_metrics(state["metrics"])

    def _load_metrics(self, saved_states) -> None:
        self._resumed_metrics = None
        for metric, saved in zip(self.metrics, saved_states):
            metric.load_state_dict(_to_device(saved, self.recipe.device))

    # ------------------------------------------------------------------ saving and restoring
    def state_dict(self) -> dict:
        """What every process shares."""
        return {
            "model": None if self.sharded else self.model.state_dict(),
            "optimizer": None if self.sharded else self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "data_seed": getattr(self.train_data, "seed", None),
            "position": self.position(),
        }

    def save_shards(self, folder) -> None:
        """An FSDP run's weights and optimizer state: every rank writes its own shards."""
        from ember.distributed.checkpoint import save_checkpoint

        save_checkpoint(self.model, folder, self.optimizer)

    def load_state_dict(self, state: dict, shards=None, source="the state") -> None:
        """Restore, and continue the loop from the saved position; a state of another model or
        optimizer is refused (ValueError) before anything changes. `shards`: the folder of a
        sharded backup's weights and optimizer state (resharded to this run's processes)."""
        problems = self.mismatch(state) if shards is None else []  # load_checkpoint checks the shards
        if problems:
            raise ValueError(f"{source} is of another model or optimizer: " + " | ".join(problems)
                             + ". Resume with the same script, or point backup_dir/resume at a new directory.")
        if shards is not None:
            from ember.distributed.checkpoint import load_checkpoint

            load_checkpoint(self.model, shards, self.optimizer)
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        if state["data_seed"] is not None and hasattr(self.train_data, "seed"):
            self.train_data.seed = state["data_seed"]
        position = state["position"]
        self.global_step, self.finished = position["global_step"], position["finished"]
        self.start_epoch, self.start_step = position["epoch"], position["step"]
        self.between_epochs = position["step"] == 0
        self.epoch = position["epoch"] - 1 if self.between_epochs else position["epoch"]  # the last one run

    def process_state_dict(self) -> dict:
        """This process's RNG streams and data order; mid-epoch also the epoch start's and the
        running sums of its share (the loader restarts the epoch, from its start's generators)."""
        if self.between_epochs:
            return {"rng": rng_state(), "generators": self.generator_states(), "running": None,
                    "epoch_start_rng": None}
        return {"rng": rng_state(), "generators": self._epoch_start["generators"], "running": self.running_state(),
                "epoch_start_rng": self._epoch_start["rng"]}

    def load_process_state_dict(self, state: dict) -> None:
        for role, generator in loader_generators(self.train_data).items():
            if role in state["generators"]:
                generator.set_state(state["generators"][role])
        set_rng_state(state["rng"])
        if state["running"] is not None:
            self._resumed_epoch = {"epoch_start": {"rng": state["epoch_start_rng"], "generators": state["generators"]},
                                   "running": state["running"], "rng": state["rng"]}

    def generator_states(self) -> dict:
        return {role: g.get_state() for role, g in loader_generators(self.train_data).items()}

    def mismatch(self, state: dict) -> list:
        """How an unsharded backup's model and optimizer differ from this run's ([] if they fit)."""
        if self.sharded:
            return ["it was written by a run that was not FSDP-sharded, and this one is: resume with the strategy "
                    "it was written with"]
        own, saved = self.model.state_dict(), state["model"]
        problems = [f"missing: {', '.join(sorted(set(own) - set(saved)))}" if set(own) - set(saved) else "",
                    f"unexpected: {', '.join(sorted(set(saved) - set(own)))}" if set(saved) - set(own) else ""]
        problems += [f"{k}: backup {tuple(saved[k].shape)} vs model {tuple(own[k].shape)}"
                     for k in sorted(set(own) & set(saved)) if tuple(saved[k].shape) != tuple(own[k].shape)]
        groups = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
        now = [len(g["params"]) for g in self.optimizer.param_groups]
        if groups != now:
            problems.append(f"optimizer parameter groups: backup {groups} vs now {now}")
        return [p for p in problems if p]

    def all_finite(self) -> bool:
        """Whether this process's weights, buffers and optimizer state are finite (its shards under FSDP)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        tensors += [v for state in self.optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
        local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
        return all(bool(torch.isfinite(t).all()) for t in local if t.is_floating_point())


def _to_device(state: dict, device) -> dict:
    return {name: _value_to_device(value, device) for name, value in state.items()}


def _value_to_device(value, device):
    if isinstance(value, list):
        return [_value_to_device(v, device) for v in value]
    return value.detach().to(device) if isinstance(value, torch.Tensor) else value
