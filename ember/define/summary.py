"""`model.summary()`: layers in call order with output shapes and parameter counts; for a
functional model also what each call is connected to, as Keras shows it."""
from dataclasses import dataclass, field

import torch
from torch import nn

from ember.define.shapes import fake_forward


@dataclass
class SummaryRow:
    name: str
    type: str
    output_shape: tuple | None
    params: int
    connected_to: str | None = None  # functional models: the calls whose outputs this one takes


@dataclass
class Summary:
    model_name: str
    rows: list = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0
    size_bytes: int = 0

    def __str__(self):
        graph = any(r.connected_to is not None for r in self.rows)
        header = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if graph else ())
        lines = [(f"{r.name} ({r.type})", _shape(r.output_shape), f"{r.params:,}")
                 + ((r.connected_to or "-",) if graph else ()) for r in self.rows]
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
        fmt = lambda cells: "  ".join(c.rjust(w) if i == 2 else c.ljust(w)
                                      for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        rule = "=" * len(fmt(header))
        out = [f'Model: "{self.model_name}"', rule, fmt(header), rule]
        out += [fmt(line) for line in lines]
        out += [
            rule,
            f"Total params: {self.total_params:,} ({_bytes(self.size_bytes)})",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            rule,
        ]
        return "\n".join(out)


def summarize(model: nn.Module, input_shape=None, example=None) -> Summary:
    """Rows for the model's direct children in the order they run (a child called twice
    appears twice; its parameters count once). Shapes need `input_shape`/`example`,
    except for a built `Sequential`, which knows its own."""
    input_shape = input_shape or getattr(model, "input_shape", None)
    if callable(getattr(model, "graph_rows", None)):  # a functional model knows its calls and their shapes
        return _totals(model, [SummaryRow(*row) for row in model.graph_rows()])
    top = getattr(model, "module", model)  # a wrapped model: describe what it wraps
    children = dict(top.named_children())
    if list(children) == ["layers"]:  # Sequential: its layers are the rows
        children = {getattr(m, "name", None) or str(i): m for i, m in enumerate(top.layers)}
    calls = []
    if example is not None or input_shape is not None:
        calls = _trace_calls(model, children, input_shape, example)
    if not calls:
        calls = [(name, module, None) for name, module in children.items()]

    rows, counted = [], set()
    for name, module, shape in calls:
        params = 0
        if name not in counted:
            counted.add(name)
            params = sum(p.numel() for p in module.parameters())
        rows.append(SummaryRow(name, type(module).__name__, shape, params))
    return _totals(model, rows)


def _totals(model, rows) -> Summary:
    params = list(model.parameters())
    buffers = list(model.buffers())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    size = sum(t.numel() * t.element_size() for t in params + buffers)
    name = getattr(model, "name", None) or type(getattr(model, "module", model)).__name__
    return Summary(name, rows, total, trainable, total - trainable, size)


def _trace_calls(model, children, input_shape, example):
    calls, handles = [], []
    by_module = {id(m): n for n, m in children.items()}

    def hook(module, _inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else getattr(output, "logits", output)
        shape = (None,) + tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
        calls.append((by_module[id(module)], module, shape))

    for module in children.values():
        handles.append(module.register_forward_hook(hook))
    try:
        if example is not None:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    model(**example) if isinstance(example, dict) else model(example)
            finally:
                model.train(was_training)
        else:
            fake_forward(model, (2,) + tuple(input_shape))
    finally:
        for h in handles:
            h.remove()
    return calls


def _shape(shape):
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
