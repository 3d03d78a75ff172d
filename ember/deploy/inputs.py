"""The model's inputs as every exporter sees them: names, example tensors, dynamic dimensions.

An `example` is one tensor (input name "input"), a tuple of tensors (named after the
forward arguments) or a dict of tensors (passed as keyword arguments, named by key).
Dimension 0 is the batch; integer inputs of rank >= 2 (token ids, masks) also get a
variable sequence dimension 1, so text models export for any length.
"""
import inspect
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.export import Dim


@dataclass
class ModelInputs:
    names: list
    tensors: list
    keyword: bool  # call forward(**inputs) rather than forward(*inputs)
    # Set by the capture when the model's code fixes the sequence length (a Flatten before a Dense, say).
    fixed_sequence: bool = False
    # The position of forward's *args parameter, if the tensors reach one (a functional model's
    # forward(inputs, *more)): torch.export wants those arguments' shapes as one tuple.
    var_positional_from: int | None = None
    # Captured graphs by dynamic/static, so the formats of one export share a capture (the slow step).
    programs: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_example(cls, model, example) -> "ModelInputs":
        if example is None:
            shape = getattr(model, "input_shape", None)
            if not shape:
                raise ValueError("export needs example=: a batch of inputs shaped like real data, e.g. "
                                 "torch.randn(2, 1, 28, 28) for 28x28 grayscale images")
            example = torch.rand(2, *shape)
        declared = list(getattr(model, "input_names", None) or [])  # a functional model names its inputs
        if isinstance(example, dict) and declared and set(example) == set(declared):
            example = [example[name] for name in declared]  # it takes them in this order
        if isinstance(example, dict):
            names, tensors, keyword = list(example), list(example.values()), True
        elif isinstance(example, (tuple, list)):
            tensors, keyword = list(example), False
            names = declared if len(declared) == len(tensors) else ["input"] if len(tensors) == 1 \
                else _forward_argument_names(model, len(tensors))
        else:
            names, tensors, keyword = declared if len(declared) == 1 else ["input"], [example], False
        tensors = [_as_tensor(name, t) for name, t in zip(names, tensors)]
        batches = {t.shape[0] for t in tensors}
        if len(batches) != 1:
            raise ValueError(f"example inputs disagree on the batch size (dimension 0): "
                             f"{ {n: tuple(t.shape) for n, t in zip(names, tensors)} }")
        return cls(names, tensors, keyword, var_positional_from=None if keyword else _var_positional(model))

    @property
    def batch_size(self) -> int:
        return self.tensors[0].shape[0]

    def variable_dims(self, tensor) -> tuple:
        sequence = not (self.fixed_sequence or tensor.is_floating_point()) and tensor.dim() >= 2
        return (0, 1) if sequence else (0,)

    def with_tensors(self, tensors) -> "ModelInputs":
        return ModelInputs(self.names, list(tensors), self.keyword, self.fixed_sequence, self.var_positional_from)

    def rows(self, start, stop) -> "ModelInputs":
        return self.with_tensors([t[start:stop] for t in self.tensors])

    def at_least_two_rows(self) -> "ModelInputs":
        # torch.export specialises a batch of 1 to the constant 1, so a dynamic batch needs >= 2 rows.
        if self.batch_size >= 2:
            return self
        return self.with_tensors([t.expand(2, *t.shape[1:]).clone() for t in self.tensors])

    def args_kwargs(self):
        return ((), dict(zip(self.names, self.tensors))) if self.keyword else (tuple(self.tensors), {})

    def dynamic_shapes(self):
        # The sequence's range comes from the model (a BERT's 512 positions): a fixed maximum would
        # contradict that bound and torch.export would refuse the export. AUTO, not DYNAMIC: a model
        # whose code fixes the length (a Flatten before a Dense) exports at that length.
        batch, sequence = Dim("batch", min=1, max=1 << 16), Dim.AUTO
        specs = [{d: (batch if d == 0 else sequence) for d in self.variable_dims(t)} for t in self.tensors]
        if self.keyword:
            return dict(zip(self.names, specs))
        split = self.var_positional_from
        return tuple(specs) if split is None or split >= len(specs) else (*specs[:split], tuple(specs[split:]))

    def numpy(self) -> dict:
        return {n: t.detach().cpu().numpy() for n, t in zip(self.names, self.tensors)}

    def call(self, model):
        args, kwargs = self.args_kwargs()
        device = _device_of(model)
        args = tuple(a.to(device) for a in args)
        kwargs = {k: v.to(device) for k, v in kwargs.items()}
        return model(*args, **kwargs)

    def like(self, data, what: str) -> "ModelInputs":
        """`data` (held-out or calibration inputs) in this example's structure; raises if shaped otherwise."""
        if isinstance(data, dict):
            missing = [n for n in self.names if n not in data]
            if missing:
                raise ValueError(f"{what} lacks the inputs {missing}; it has {list(data)}")
            values = [data[n] for n in self.names]
        else:
            values = list(data) if isinstance(data, (tuple, list)) else [data]
        if len(values) != len(self.tensors):
            raise ValueError(f"{what} has {len(values)} inputs, the example has {len(self.tensors)}")
        tensors = [_as_tensor(name, value) for name, value in zip(self.names, values)]
        for name, mine, theirs in zip(self.names, self.tensors, tensors):
            fixed = [d for d in range(mine.dim()) if d not in self.variable_dims(mine)]
            if mine.dim() != theirs.dim() or any(mine.shape[d] != theirs.shape[d] for d in fixed):
                expected = ["N" if d not in fixed else mine.shape[d] for d in range(mine.dim())]
                raise ValueError(f"{what} input {name!r} has shape {tuple(theirs.shape)}, expected "
                                 f"({', '.join(map(str, expected))}) like the example")
            if mine.dtype.is_floating_point != theirs.dtype.is_floating_point:
                raise ValueError(f"{what} input {name!r} has dtype {theirs.dtype}, the example {mine.dtype}")
        return self.with_tensors([t.to(m.dtype) for m, t in zip(self.tensors, tensors)])


def output_list(outputs) -> list:
    """A forward's result as a flat list of tensors (tensor, tuple, dict or a transformers ModelOutput)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [v for v in outputs.values() if isinstance(v, torch.Tensor)]
    return [o for o in outputs if isinstance(o, torch.Tensor)]


def output_names(outputs, model=None) -> list:
    """Dict outputs by key; a model that names its outputs (a functional model's `output_names`) by those."""
    if isinstance(outputs, dict):
        return [k for k, v in outputs.items() if isinstance(v, torch.Tensor)]
    count = len(output_list(outputs))
    declared = list(getattr(model, "output_names", None) or [])
    if len(declared) == count:
        return declared
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _as_tensor(name, value):
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"example input {name!r} must be a tensor or numpy array, got {type(value).__name__}")
    if value.dim() == 0:
        raise ValueError(f"example input {name!r} is a scalar; give a batch (dimension 0 is the batch)")
    return value.detach().cpu()


def _forward_argument_names(model, count):
    parameters = [p for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(parameters) >= count:
        return [p.name for p in parameters[:count]]
    return [f"input_{i}" for i in range(count)]


def _var_positional(model):
    positional = [p for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return next((i for i, p in enumerate(positional) if p.kind is p.VAR_POSITIONAL), None)


def _device_of(model):
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
