"""`ember.Model`: a `torch.nn.Module` with Keras' compile / fit / evaluate / predict.

Subclass it exactly like `nn.Module` (`__init__` + `forward`), or give an existing
module the same methods with `ember.wrap(module)`. The methods are thin: training
lives in `ember.train.trainer`, saving in `ember.saving`, export in `ember.deploy`.
"""
from torch import nn

from ember.define.config_record import record_init_arguments
from ember.define.symbolic import call_module, holds_symbolic
from ember.saving.registry import register_model_class


class Model(nn.Module):
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        record_init_arguments(cls)  # so ember.load() can rebuild subclassed models
        # ember.load() rebuilds a model file's class from the registry: a file names a class, it
        # never chooses what gets imported.
        register_model_class(cls)

    def __new__(cls, *args, **kwargs):
        # ember.Model(inputs, outputs) is a functional model, as keras.Model(inputs, outputs) is.
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from ember.define.functional import Functional

            return super().__new__(Functional)
        return super().__new__(cls)

    def __call__(self, *args, **kwargs):
        if args and holds_symbolic(args[0]):  # a model used as a layer of a functional model
            return call_module(self, args, kwargs)
        return super().__call__(*args, **kwargs)

    # Set by compile(): plain objects, so not registered as sub-modules.
    trainer = None  # ember.train.trainer.Trainer; its `state` (TrainState) holds the optimizer, metrics...
    stop_training = False

    # --- training -------------------------------------------------------------
    def compile(self, optimizer="adamw", loss=None, metrics=None, **options):
        """Configure training. See `ember.train.compile.compile_recipe` for every option; the frozen
        recipe is `model.recipe`, what training changes is `model.trainer.state`."""
        from ember.train.compile import compile_recipe
        from ember.train.trainer import Trainer

        self.trainer = Trainer(self, compile_recipe(self, optimizer, loss, metrics, **options))
        return self

    @property
    def recipe(self):
        """compile()'s `TrainingRecipe` (None before compile)."""
        return self.trainer.recipe if self.trainer is not None else None

    def fit(self, x=None, y=None, **kwargs):
        """Train; returns a `History`. See `ember.train.trainer.Trainer.fit`."""
        return self._trainer().fit(x, y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs) -> dict:
        return self._trainer().evaluate(x, y, **kwargs)

    def predict(self, x, **kwargs):
        return self._trainer().predict(x, **kwargs)

    def _trainer(self):
        from ember.train.trainer import Trainer

        return self.trainer if self.trainer is not None else Trainer(self)  # uncompiled: predict only

    @property
    def optimizer(self):
        return self.trainer.state.optimizer if self.trainer is not None else None

    # --- inspection -----------------------------------------------------------
    def summary(self, input_shape=None, example=None, print_fn=print):
        """Print and return a table of layers, output shapes and parameter counts."""
        from ember.define.summary import summarize

        table = summarize(self, input_shape=input_shape, example=example)
        if print_fn:
            print_fn(str(table))
        return table

    def count_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- saving and export ----------------------------------------------------
    def save(self, path):
        """Write one file: weights (safetensors), architecture and compile config (JSON).
        Under FSDP every rank calls it: the weights are gathered and rank 0 writes."""
        from ember.saving import save_model

        saved = _weights_and_class(self)
        if saved is not None:
            weights, model_class = saved
            save_model(self, path, weights=weights, model_class=model_class)

    def save_weights(self, path):
        """Write the weights as a safetensors file. Under FSDP every rank calls it, as for save()."""
        from ember.saving import save_weights

        saved = _weights_and_class(self)
        if saved is not None:
            save_weights(saved[0], path)

    def load_weights(self, path, strict=True):
        from ember.saving import load_weights

        load_weights(self, path, strict=strict)
        return self

    def export(self, path, format="onnx", example=None, **options):
        """Export to a deployable format and check it against this model; returns an ExportReport."""
        from ember.deploy import export

        return export(self, path, format=format, example=example, **options)


class Wrapped(Model):
    """Any `nn.Module` with ember's methods; it shares the module's parameters (no copy)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            # Attributes of the wrapped model (e.g. a Hugging Face model's `.config`).
            return getattr(super().__getattr__("module"), name)


def _weights_and_class(model):
    """(full state_dict, class built as) of a model to save, or None on an FSDP rank other than 0.
    Under FSDP every rank must call it: gathering the shards to rank 0 is a collective, and FSDP
    swapped the class for its FSDP<Name> subclass."""
    from ember.distributed import is_sharded

    if not is_sharded(model):
        return model.state_dict(), type(model)
    import torch.distributed as dist

    from ember.distributed import gather_state_dict

    weights = gather_state_dict(model)
    return (weights, type(model).__bases__[-1]) if dist.get_rank() == 0 else None


def wrap(module: nn.Module) -> Model:
    """Give `module` compile / fit / evaluate / predict / summary / save / export."""
    if isinstance(module, Model):
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"ember.wrap expects a torch.nn.Module, got {type(module).__name__}")
    return Wrapped(module)
