"""fit / evaluate / predict. The training step is `Trainer.train_step`, the only one in ember.

One batch travels: `Model.fit` -> `Trainer.fit` (epoch loop, callbacks) ->
`Trainer.train_step` (autocast and CPU fast paths -> forward -> loss -> scaled backward -> unscale ->
clip -> optimizer step -> zero_grad -> per-batch LR step). Precision, gradient
accumulation and the distributed strategy's gradient sync are visible in that one
function; nothing else overrides it.

Loss and metrics accumulate on the device and are read (one sync) only when the
progress bar redraws, when a callback reads batch logs, and at the end of an epoch.

`compile()` makes one Trainer per model from the frozen `TrainingRecipe`; its `TrainState`
owns what training changes (optimizer, scaler, metrics, position...) across fit() calls.
"""
import contextlib
import math
import warnings

import numpy as np
import torch

from ember.errors import ShapeError
from ember.distributed.registry import get_strategy
from ember.distributed.strategy import SingleProcess
from ember.train.callbacks.base import CallbackList, LazyLogs
from ember.train.callbacks.history import History
from ember.train.callbacks.progress import ProgressBar
from ember.train.data import call_model, make_batches, move, move_inputs, split_validation
from ember.train.epoch_steps import StepsPerEpoch, length_or_none
from ember.train.diagnose import check_targets, explain_forward_error, explain_loss_error
from ember.train.fast_paths import CpuTrainingFastPaths
from ember.train.host_memory import keep_freed_memory
from ember.train.regularization import penalty, regularized_layers
from ember.train.jit import CompiledForward
from ember.train.schedules import build_schedule
from ember.train.state import TrainState


class Trainer:
    def __init__(self, model, recipe=None):
        """`recipe`: compile()'s `TrainingRecipe`; None for an uncompiled model, which can only predict."""
        self.model, self.recipe = model, recipe
        self.state = TrainState(model, recipe) if recipe is not None else None
        self.device = recipe.device if recipe is not None else _model_device(model)
        self.diverged = False  # the loss became NaN or inf: fit stopped (BackupAndRestore keeps its backups)
        # fit() replaces these with its strategy's for its duration; evaluate() runs in this process alone.
        self.strategy, self.forward_model, self.fast_paths = SingleProcess(), model, contextlib.nullcontext()
        self.targets_checked = False
        self.regularized = []  # the layers whose regularizers add to the loss, found on each fit's first batch
        self.in_training_layout = False  # see _training_layout
        # What callbacks ask fit() to undo however it ends, by return or exception (BackupAndRestore's
        # signal handlers); fit() gives each call its own.
        self.fit_cleanup = contextlib.ExitStack()

    @contextlib.contextmanager
    def _apart_from_fit(self):
        """evaluate() in this process alone, leaving a fit() that calls it (from a callback) as it was."""
        during_fit = self.strategy, self.forward_model, self.targets_checked, self.state.running_state()
        self.strategy, self.forward_model, self.targets_checked = SingleProcess(), self.model, False
        try:
            yield
        finally:
            self.strategy, self.forward_model, self.targets_checked, running = during_fit
            self.state.load_running_state(running)

    def _require_compiled(self):
        if self.state is None:
            raise RuntimeError("the model is not compiled: call model.compile(optimizer=..., loss=..., "
                               "metrics=[...]) before fit() or evaluate()")

    # ------------------------------------------------------------------ fit
    def fit(self, x=None, y=None, *, batch_size=32, epochs=1, validation_data=None, validation_split=0.0,
            callbacks=None, shuffle=True, verbose=1, initial_epoch=0, validation_batch_size=None,
            sample_weight=None, class_weight=None, steps_per_epoch=None, validation_steps=None, validation_freq=1,
            strategy=None, resume=None):
        """Train for `epochs`; returns the `History` (per-epoch loss, metrics, val_*, lr).

        x, y: numpy arrays, tensors, or lists / dicts of them (several inputs or outputs, see
        ember/train/data.py and outputs.py); or x alone as a Dataset, DataLoader or an iterable of
        (x, y), (x, y, sample_weight) or dict batches. validation_data: (x_val, y_val[, sample_weight])
        or any such x. As in Keras: sample_weight (one weight per sample, or a list / dict by output),
        class_weight ({class: weight}, one output, in-memory y), steps_per_epoch / validation_steps
        (epochs continue the data where the last one stopped, ember/train/epoch_steps.py),
        validation_freq (validate after every N-th epoch).
        strategy: "ddp", "fsdp" or an ember.distributed strategy (or set in compile()).
        resume: a BackupAndRestore directory to continue an interrupted run from; its default
        `preemption_signals` make fit() back up and exit on SIGTERM (and SIGUSR1 in a Slurm job).
        """
        self._require_compiled()
        recipe = self.recipe
        self._reuse_host_memory()
        self.targets_checked, self.diverged = False, False
        self.strategy = get_strategy(strategy if strategy is not None else recipe.strategy)
        if int(validation_freq) != validation_freq or validation_freq < 1:
            raise ValueError(f"validation_freq must be a positive integer (validate every N epochs), got "
                             f"{validation_freq!r}")
        if validation_split:
            (x, y, sample_weight), validation_data = split_validation(x, y, sample_weight, validation_split)
        seed = int(torch.randint(0, 2**62, (1,)).item())  # data order follows ember.seed()
        train = make_batches(x, y, sample_weight=sample_weight, class_weight=class_weight, batch_size=batch_size,
                             shuffle=shuffle, seed=seed, device=self.device)
        if steps_per_epoch is not None:
            train = StepsPerEpoch(train, steps_per_epoch, "steps_per_epoch")
        val = None
        if validation_data is not None:
            vx, vy, vsw = _split_xy(validation_data)
            val = make_batches(vx, vy, sample_weight=vsw, batch_size=validation_batch_size or batch_size,
                               device=self.device, what="validation_data")
            if validation_steps is not None:
                val = StepsPerEpoch(val, validation_steps, "validation_steps")
        if self.strategy.contiguous_parameters and self.state.channels_last:
            self.state.channels_last = self.state.rewrites_views = False
            self.model.to(memory_format=torch.contiguous_format)
        self._dry_run(train)  # builds lazy layers before a strategy wraps or shards them
        with self._training_layout(), contextlib.ExitStack() as self.fit_cleanup:
            return self._fit(train, val, callbacks, epochs, batch_size, verbose, initial_epoch, validation_freq,
                             resume)

    def _fit(self, train, val, callbacks, epochs, batch_size, verbose, initial_epoch, validation_freq, resume):
        recipe, state, model = self.recipe, self.state, self.model
        self.forward_model = self.strategy.setup(model, train, state)
        optimizer = state.build_optimizer()  # after FSDP sharded the parameters it optimizes
        if val is not None:
            self.strategy.setup_validation(val)
        if recipe.jit_compile:
            self.forward_model = CompiledForward(self.forward_model)
        self.fast_paths = _training_fast_paths(recipe, state)
        steps = length_or_none(train)
        per_batch = recipe.lr_schedule_interval == "batch"
        total = (math.ceil(steps / recipe.accumulate_steps) if steps else 0) * epochs if per_batch else epochs
        state.scheduler = build_schedule(recipe.lr_schedule, optimizer, total_steps=total,
                                         warmup_steps=recipe.warmup_steps)

        history = History()
        user_callbacks = list(callbacks or [])
        if resume is not None:
            from ember.train.callbacks.backup_and_restore import BackupAndRestore

            if not any(isinstance(cb, BackupAndRestore) for cb in user_callbacks):
                user_callbacks.append(BackupAndRestore(resume))
        shown = [ProgressBar(verbose)] if verbose and self.strategy.is_main else []
        params = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "verbose": verbose}
        # A callback marked runs_last (BackupAndRestore) restores and saves the others' state after theirs.
        last = [cb for cb in user_callbacks if getattr(cb, "runs_last", False)]
        first = [cb for cb in user_callbacks if not getattr(cb, "runs_last", False)]
        cbs = self.callbacks = CallbackList(first + [history] + shown + last, model, self, params)
        state.start_fit(train, initial_epoch)
        model.stop_training = False
        logs = {}
        cbs.on_train_begin()  # BackupAndRestore loads the state of a backup here, with its position
        for epoch in range(state.first_epoch(epochs), epochs):
            model.train()
            state.begin_epoch(epoch)
            cbs.on_epoch_begin(epoch)
            for step, batch in enumerate(state.batches(epoch), state.step_in_epoch):
                cbs.on_train_batch_begin(step)
                last_micro = (step + 1) % recipe.accumulate_steps == 0 or step + 1 == steps
                self.train_step(move_inputs(batch.inputs, self.device), move(batch.targets, self.device), last_micro,
                                batch.weight, move(batch.sample_weight, self.device))
                state.step_in_epoch = step + 1
                cbs.on_train_batch_end(step, self.strategy.batch_logs(LazyLogs(self.running_logs)))
                if model.stop_training:
                    break
            state.between_epochs = True
            logs = self.running_logs()
            logs["lr"] = optimizer.param_groups[0]["lr"]
            if val is not None and (epoch + 1) % validation_freq == 0:
                logs.update({f"val_{k}": v for k, v in self._evaluate_batches(val, cbs, epoch).items()})
            if state.scheduler is not None and not per_batch:
                state.scheduler.step()
            cbs.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        state.finished = True
        cbs.on_train_end(logs)
        return history

    def train_step(self, inputs, targets, last_micro=True, weight=1.0, sample_weight=None):
        """One micro-batch: forward and backward; on the last micro-batch, the optimizer step.
        `weight` scales the loss (this process's share of a global batch, ember.train.data.Batch);
        `sample_weight` weighs each sample's loss inside it (ember/train/losses.py)."""
        recipe, state = self.recipe, self.state
        optimizer, scaler = state.optimizer, state.scaler
        # DDP/FSDP skip the gradient all-reduce on accumulation micro-batches.
        with self.strategy.gradient_sync(self.forward_model, last_micro):
            with state.precision.autocast(), self.fast_paths:
                outputs, loss, per_output = self.forward_and_loss(inputs, targets, sample_weight)
            scaler.scale(loss * weight / recipe.accumulate_steps).backward()
        if last_micro:
            if recipe.clip_grad_norm:
                scaler.unscale_(optimizer)
                self.strategy.clip_grad_norm(self.model, recipe.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            if state.scheduler is not None and recipe.lr_schedule_interval == "batch":
                state.scheduler.step()
        state.track(loss, per_output, outputs, targets, _batch_size(outputs))

    def forward_and_loss(self, inputs, targets, sample_weight=None):
        """Model outputs (logits for Hugging Face outputs), the loss to minimise and, with several
        outputs, each one's unweighted loss (ember/train/outputs.py)."""
        try:
            raw = call_model(self.model, inputs, self.forward_model)
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            if isinstance(error, ShapeError):
                raise
            raise explain_forward_error(self.model, inputs, error) from error
        outputs = _logits(raw)
        if not self.targets_checked:  # the first batch of each fit() and evaluate()
            if self.state.outputs is None:
                self.state.read_outputs(outputs)
            check_targets(outputs, targets, self.recipe, self.state.train_data if self.model.training else None)
            self.targets_checked = True
            self.regularized = regularized_layers(self.model)
        outputs, loss, per_output = self._compiled_loss(raw, outputs, targets, sample_weight)
        extra = penalty(self.regularized) if self.regularized else None
        return outputs, loss if extra is None else loss + extra, per_output

    def _compiled_loss(self, raw, outputs, targets, sample_weight):
        if self.recipe.loss is None:
            loss = getattr(raw, "loss", None)
            if loss is None or sample_weight is not None:
                raise ValueError("no loss: compile(loss=...) is needed unless the model returns its own .loss "
                                 "(a Hugging Face model given labels), and to weigh samples")
            return outputs, loss, ()
        if targets is None:
            raise ValueError("the data has no targets (y) but the compiled loss needs them")
        try:
            return (outputs, *self.state.outputs.loss(outputs, targets, sample_weight))
        except (IndexError, RuntimeError) as error:  # labels are checked on the first batch only
            where = f"batch {self.state.step_in_epoch + 1} of epoch {self.state.epoch + 1}" if self.model.training \
                else "an evaluation batch"
            raise explain_loss_error(outputs, targets, self.recipe, error, where) from error

    def running_logs(self) -> dict:
        """Mean loss and metrics so far this epoch, reduced across processes (syncs the device)."""
        state = self.state
        loss_sum, seen = self.strategy.reduce_sum(state.loss_sum, state.seen)
        loss = (loss_sum / max(seen, 1)).item()
        logs = {"loss": loss}
        for m in state.metrics:
            logs[m.name] = float(self.strategy.reduce_metric(m).result())
        if not math.isfinite(loss) and self.model.training and not self.model.stop_training:
            warnings.warn(f"the loss became {loss} in epoch {state.epoch + 1} (by batch {state.step_in_epoch}): "
                          "training stopped. Lower the learning rate or clip gradients (clip_grad_norm=).",
                          RuntimeWarning, stacklevel=2)
            self.model.stop_training = self.diverged = True
        return logs

    # ------------------------------------------------------- evaluate / predict
    def evaluate(self, x=None, y=None, *, batch_size=32, sample_weight=None, steps=None, verbose=0, callbacks=None,
                 return_dict=True):
        """Loss and metrics over the data: a dict, or with return_dict=False Keras' list (loss first;
        the loss alone when there are no metrics). sample_weight weighs the loss as in fit(); steps:
        evaluate that many batches. verbose=1 draws a progress bar; callbacks get the on_test_* hooks."""
        self._require_compiled()
        self._reuse_host_memory()
        batches = make_batches(x, y, sample_weight=sample_weight, batch_size=batch_size, device=self.device)
        if steps is not None:
            batches = StepsPerEpoch(batches, steps, "steps")
        self._dry_run(batches)
        with self._apart_from_fit(), self._training_layout():
            logs = self._evaluate_batches(batches, self._callbacks(callbacks, verbose, batches))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_batches(self, batches, callbacks, evaluation=0):
        """`evaluation`: the how-many-th evaluation of these batches (validation_steps continue the data)."""
        was_training = self.model.training
        self.model.eval()
        self.state.reset_running()
        callbacks.on_test_begin()
        try:
            with torch.inference_mode(), self.state.precision.autocast(), self._view_rewrites():
                for step, (inputs, targets, _, sample_weight) in enumerate(batches.epoch(evaluation)):
                    callbacks.on_test_batch_begin(step)
                    targets = move(targets, self.device)
                    outputs, loss, per_output = self.forward_and_loss(move_inputs(inputs, self.device), targets,
                                                                      move(sample_weight, self.device))
                    self.state.track(loss, per_output, outputs, targets, _batch_size(outputs))
                    callbacks.on_test_batch_end(step, LazyLogs(self.running_logs))
            logs = self.running_logs()
        finally:
            self.model.train(was_training)
        callbacks.on_test_end(logs)
        return logs

    def predict(self, x, *, batch_size=32, verbose=0, callbacks=None):
        """Model outputs (logits for Hugging Face models) as a numpy array, or a tuple, list or dict of them
        as the model returns several, in eval mode, no gradients.
        verbose=1 draws a progress bar; callbacks get the on_predict_* hooks (batch logs: {"outputs": ...})."""
        self._reuse_host_memory()
        batches = make_batches(x, None, batch_size=batch_size, device=self.device, what="x")
        self._dry_run(batches)
        callbacks = self._callbacks(callbacks, verbose, batches)
        autocast = self.state.precision.autocast() if self.state else contextlib.nullcontext()
        was_training = self.model.training
        self.model.eval()
        chunks = []
        callbacks.on_predict_begin()
        try:
            with torch.inference_mode(), autocast, self._training_layout(), self._view_rewrites():
                for step, (inputs, *_) in enumerate(batches.epoch(0)):
                    callbacks.on_predict_batch_begin(step)
                    inputs = move_inputs(inputs, self.device)
                    if isinstance(inputs, dict):
                        inputs.pop("labels", None)
                    try:
                        raw = call_model(self.model, inputs)
                    except (RuntimeError, TypeError, IndexError) as error:
                        raise explain_forward_error(self.model, inputs, error) from error
                    chunks.append(_to_numpy(_logits(raw)))
                    callbacks.on_predict_batch_end(step, {"outputs": chunks[-1]})
        finally:
            self.model.train(was_training)
        callbacks.on_predict_end()
        if isinstance(chunks[0], dict):
            return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
        if isinstance(chunks[0], (tuple, list)):
            return type(chunks[0])(np.concatenate(parts) for parts in zip(*chunks))
        return np.concatenate(chunks)

    def _callbacks(self, callbacks, verbose, batches):
        """The CallbackList of an evaluate or predict call (a progress bar first when verbose)."""
        shown = [ProgressBar(verbose)] if verbose else []
        return CallbackList(shown + list(callbacks or []), self.model, self,
                            {"steps": length_or_none(batches), "verbose": verbose, "epochs": 1})

    # ------------------------------------------------------- setup helpers
    def _reuse_host_memory(self):
        # Process-wide (glibc malloc settings): only a compiled model's fit/evaluate/predict, which
        # asked for it with compile(reuse_host_memory=True, the default), changes it.
        if self.recipe is not None and self.recipe.reuse_host_memory:
            keep_freed_memory()

    def _dry_run(self, batches):
        """Forward the first batch before training when needed: to build layers used without an
        input shape, and to check the model accepts channels_last activations (a `.view()` on
        them fails; such a model keeps the default layout)."""
        state = self.state
        if state is None or (state.optimizer is not None and (state.layout_checked or not state.channels_last)):
            return
        inputs = move_inputs(next(iter(batches.epoch(0)))[0], self.device)
        if state.optimizer is None:
            self._forward_without_grad(inputs)
            self.model.to(self.device)
        if state.channels_last and not state.layout_checked:
            self.model.to(memory_format=torch.channels_last)
            try:
                self._forward_without_grad(inputs)
            except ShapeError as error:
                if "view size is not compatible" not in str(error):
                    raise
                self._view_in_nchw(inputs)
        state.layout_checked = True

    def _view_in_nchw(self, inputs):
        """The model .view()s a channels_last activation: train channels_last with those views rewritten
        (ember/train/fast_paths.py), where the fast paths run; else in the default layout."""
        state, fast_paths = self.state, _training_fast_paths(self.recipe, self.state)
        if isinstance(fast_paths, CpuTrainingFastPaths):
            try:
                with CpuTrainingFastPaths(dropout=False, channels_last=True):
                    self._forward_without_grad(inputs)
                state.rewrites_views = True
                return
            except ShapeError as error:
                if "view size is not compatible" not in str(error):
                    raise
        state.channels_last = False
        self.model.to(memory_format=torch.contiguous_format)
        warnings.warn("the model calls .view() on convolution outputs in a way that fails on channels_last "
                      "activations: training in the default memory layout (use .reshape() or .flatten(1) to "
                      "get the faster one)", stacklevel=4)

    @contextlib.contextmanager
    def _training_layout(self):
        """A model whose views ember rewrites runs channels_last in ember's calls and NCHW between them,
        where the user's code (and export) runs it as written."""
        if self.state is None or not self.state.rewrites_views or self.in_training_layout:
            yield  # an evaluate() called by a callback of fit() leaves the layout to fit
            return
        self.model.to(memory_format=torch.channels_last)
        self.in_training_layout = True
        try:
            yield
        finally:
            self.in_training_layout = False
            self.model.to(memory_format=torch.contiguous_format)

    def _view_rewrites(self):
        """The context of an inference forward: the views of a model that needs them rewritten."""
        if self.state is None or not self.state.rewrites_views:
            return contextlib.nullcontext()
        return CpuTrainingFastPaths(dropout=False, channels_last=True)

    def _forward_without_grad(self, inputs):
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                call_model(self.model, inputs)
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            if isinstance(error, ShapeError):
                raise
            raise explain_forward_error(self.model, inputs, error) from error
        finally:
            self.model.train(was_training)


def _training_fast_paths(recipe, state):
    """The context the training forward runs in: ember/train/fast_paths.py on the CPU, where measured."""
    if recipe.jit_compile or recipe.device.type != "cpu" or not (recipe.fast_dropout or state.channels_last):
        return contextlib.nullcontext()  # torch.compile fuses these itself
    return CpuTrainingFastPaths(dropout=recipe.fast_dropout, channels_last=state.channels_last)


def _split_xy(data):
    """validation_data as (x, y, sample_weight): a tuple (x, y) or (x, y, sample_weight), or x alone."""
    if isinstance(data, tuple) and len(data) in (2, 3) and not isinstance(data[0], tuple):
        return (*data, None)[:3]
    return data, None, None


def _logits(raw):
    logits = getattr(raw, "logits", None)
    return logits if logits is not None else raw


def _batch_size(outputs):
    t = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs[0] if isinstance(outputs, (tuple, list)) \
        else outputs
    return t.shape[0] if isinstance(t, torch.Tensor) and t.dim() else 1


def _to_numpy(outputs):
    if isinstance(outputs, dict):
        return {name: _to_numpy(o) for name, o in outputs.items()}
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(_to_numpy(o) for o in outputs)
    return outputs.detach().float().cpu().numpy() if outputs.dtype in (torch.bfloat16, torch.float16) \
        else outputs.detach().cpu().numpy()


def _model_device(model):
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")

