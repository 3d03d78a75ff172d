"""How a model's outputs map to losses, loss weights, metrics and log names (Keras 3's rules).

One output (a tensor, or a Hugging Face output's logits): `SingleOutput`; the compiled loss and
metrics apply to it as they are, logged as `loss` and the metrics' names.

Several outputs (a forward returning a tuple, list or dict of tensors): `SeveralOutputs`, named by
the dict's keys, else by the model's `output_names` attribute (ember's functional Model sets it),
else `output_0`, `output_1`... (Keras 3 names a subclassed model's outputs after their loss
functions, so two outputs with the same loss share one log name; ember numbers them, as its
exports do).
- loss: one for every output, a list (one per output, in order) or a dict by output name (outputs
  it leaves out get no loss); `loss_weights` a list or a dict (1 for outputs it leaves out); the
  total loss is the weighted sum.
- metrics: a list with one entry (a metric or a list of them) per output, or a dict by output name.
  A flat list of another length is an error, as in Keras: it cannot say which output it means.
- logs: `loss` (the total), `<output>_loss` (each output's unweighted loss, when more than one
  output has one), `<output>_<metric>`.
- y and sample_weight: a list in output order or a dict by output name; one sample_weight array
  weighs every output.

`resolve_outputs` reads the structure from the model's first outputs, before training starts
(Trainer._dry_run), so a resumed run's running sums find their metrics.
"""
import copy
from collections.abc import Mapping

import torch

from ember.train.metrics import Mean, get_metric


class SingleOutput:
    def __init__(self, loss, metrics):
        self.loss_fn, self.metrics = loss, metrics

    def loss(self, outputs, targets, sample_weight):
        """(total loss, the per-output losses: none here)."""
        return self.loss_fn(outputs, targets, sample_weight), ()

    def update(self, outputs, targets, per_output, batch_size):
        for metric in self.metrics:
            metric.update(outputs.detach(), targets)


class SeveralOutputs:
    def __init__(self, names, losses, output_metrics):
        """`losses`: (output index, Loss, weight) of each output with a loss; `output_metrics`:
        (output index, metric named `<output>_<metric>`)."""
        self.names, self.losses, self.output_metrics = names, losses, output_metrics
        self.loss_means = [Mean(f"{names[index]}_loss") for index, _, _ in losses] if len(losses) > 1 else []
        self.metrics = self.loss_means + [metric for _, metric in output_metrics]

    def loss(self, outputs, targets, sample_weight):
        predicted = by_output(outputs, self.names, "the model's outputs")
        expected = by_output(targets, self.names, "y")
        weights = [sample_weight] * len(self.names) if sample_weight is None or isinstance(sample_weight, torch.Tensor) \
            else by_output(sample_weight, self.names, "sample_weight")
        per_output = []
        for index, loss, _ in self.losses:
            if expected[index] is None:
                raise ValueError(f"y has no targets for output {self.names[index]!r}, which has a loss: give y one "
                                 f"array per output ({', '.join(self.names)}), or a dict by output name")
            per_output.append(loss(predicted[index], expected[index], weights[index]))
        total = sum(weight * value for (_, _, weight), value in zip(self.losses, per_output))
        return total, per_output

    def update(self, outputs, targets, per_output, batch_size):
        for mean, value in zip(self.loss_means, per_output):
            mean.update(value, batch_size)
        predicted, expected = by_output(outputs, self.names, "outputs"), by_output(targets, self.names, "y")
        for index, metric in self.output_metrics:
            metric.update(predicted[index].detach(), expected[index])


def resolve_outputs(model, outputs, recipe):
    """SingleOutput or SeveralOutputs for a model whose forward returned `outputs` (ValueError naming
    what compile() was given and what the model returns when they do not fit)."""
    names = output_names(model, outputs)
    if names is None:
        return _single_output(recipe)
    losses = _per_output("loss", recipe.loss, names)
    weights = _per_output("loss_weights", recipe.loss_weights, names, missing=1.0)
    if isinstance(recipe.loss_weights, (int, float)):
        raise ValueError(f"compile(loss_weights={recipe.loss_weights!r}) is one number for a model with "
                         f"{len(names)} outputs ({', '.join(names)}): give a list (one per output) or a dict by name")
    metric_lists = _per_output("metrics", recipe.metrics, names, missing=[], one_for_all=False)
    output_metrics = []
    for index, (name, entry) in enumerate(zip(names, metric_lists)):
        from_logits = losses[index].from_logits if losses[index] is not None else recipe.from_logits
        for given in entry if isinstance(entry, (list, tuple)) else [entry]:
            metric = copy.deepcopy(get_metric(given, from_logits))  # its own state for each output
            metric.name = f"{name}_{metric.name}"
            output_metrics.append((index, metric))
    return SeveralOutputs(names, [(i, loss, weights[i]) for i, loss in enumerate(losses) if loss is not None],
                          output_metrics)


def output_names(model, outputs):
    """The names of several outputs; None for one output (a tensor)."""
    if isinstance(outputs, Mapping):
        return tuple(outputs)
    if not isinstance(outputs, (tuple, list)):
        return None
    names = getattr(model, "output_names", None)
    if names is None:
        return tuple(f"output_{i}" for i in range(len(outputs)))
    if len(names) != len(outputs):
        raise ValueError(f"the model's output_names are {list(names)} ({len(names)}) but its forward returned "
                         f"{len(outputs)} outputs")
    return tuple(names)


def by_output(values, names, what):
    """`values` (a list in output order, or a dict by output name) as a list in output order."""
    if isinstance(values, Mapping):
        unknown = [key for key in values if key not in names]
        if unknown:
            raise ValueError(f"{what} names {unknown}, which are not outputs of the model: its outputs are "
                             f"{list(names)}")
        return [values.get(name) for name in names]
    if isinstance(values, (list, tuple)) and len(values) == len(names):
        return list(values)
    got = f"a list of {len(values)}" if isinstance(values, (list, tuple)) else f"one {type(values).__name__}"
    raise ValueError(f"{what}: expected one per output of the model's {len(names)} ({', '.join(names)}), as a list "
                     f"in that order or a dict by output name; got {got}")


def _per_output(argument, given, names, missing=None, one_for_all=True):
    """compile()'s `argument` as a list in output order."""
    if isinstance(given, Mapping):
        return [entry if entry is not None else missing
                for entry in by_output(given, names, f"compile({argument}=...)")]
    if isinstance(given, (list, tuple)):
        if given and len(given) != len(names):
            raise ValueError(f"compile({argument}=...) has {len(given)} entries for a model with {len(names)} outputs "
                             f"({', '.join(names)}): give one per output, in that order, or a dict by output name")
        return list(given) if given else [missing] * len(names)
    if given is None or not one_for_all:
        return [missing] * len(names)
    return [given] * len(names)  # one loss for every output, as in Keras


def _single_output(recipe):
    loss, metrics = recipe.loss, recipe.metrics
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, (list, tuple, Mapping)):
        raise ValueError(f"compile(loss=...) gives {len(loss)} losses but the model returns one tensor: give one loss")
    if isinstance(recipe.loss_weights, (list, tuple, Mapping)):
        raise ValueError("compile(loss_weights=...) is a list or dict but the model returns one tensor: give a number")
    if recipe.loss_weights is not None and loss is not None:
        loss = _scaled(loss, recipe.loss_weights)
    if isinstance(metrics, Mapping):
        raise ValueError("compile(metrics=...) is a dict by output name but the model returns one tensor: "
                         "give a list")
    flat = [m for entry in metrics for m in (entry if isinstance(entry, (list, tuple)) else [entry])]
    return SingleOutput(loss, [get_metric(m, recipe.from_logits) for m in flat])


def _scaled(loss, factor):
    def weighted(y_pred, y_true, sample_weight):
        return factor * loss(y_pred, y_true, sample_weight)
    return weighted
