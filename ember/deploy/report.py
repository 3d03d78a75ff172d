"""`ExportReport`: what an exporter wrote and how its reloaded artifact compares with eager PyTorch.

`EagerBaseline` runs the model once on the held-out inputs and times it; every exporter then
hands it a `run` function over its reloaded artifact (which never touches the model's class),
and `EagerBaseline.report` measures the difference, the accuracy and the latencies.
"""
import statistics
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ember.deploy.inputs import ModelInputs, output_list


@dataclass
class ExportReport:
    format: str
    files: list                      # paths relative to the export folder
    size_bytes: int
    max_abs_diff: float              # against eager PyTorch on the held-out inputs
    latency_ms: float                # median, batch 1
    latency_ms_64: float | None      # median, batch 64; None for static-batch artifacts
    eager_latency_ms: float
    eager_latency_ms_64: float
    accuracy: float | None = None    # when held-out labels were given
    eager_accuracy: float | None = None
    notes: list = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.eager_latency_ms / self.latency_ms

    @property
    def speedup_64(self) -> float | None:
        return self.eager_latency_ms_64 / self.latency_ms_64 if self.latency_ms_64 else None

    def __str__(self) -> str:
        return format_table([self])


class EagerBaseline:
    """Eager outputs, accuracy and latencies of `model` on held-out inputs, computed once per export."""

    def __init__(self, model, held_out: ModelInputs, labels=None):
        self.model, self.held_out, self.labels = model, held_out, labels
        with torch.inference_mode():
            self.outputs = [o.float().cpu().numpy() for o in output_list(held_out.call(model))]

    @cached_property
    def latencies(self):
        one, many = self.held_out.rows(0, 1), _batch_of(self.held_out, 64)

        def eager(inputs):
            def call():
                with torch.inference_mode():
                    return inputs.call(self.model)
            return call
        return median_ms(eager(one)), median_ms(eager(many))

    @cached_property
    def accuracy(self):
        return _accuracy(self.outputs[0], self.labels)

    def timing_inputs(self):
        """numpy inputs: all held-out rows, its first row (batch 1) and 64 rows (batch 64)."""
        return self.held_out.numpy(), self.held_out.rows(0, 1).numpy(), _batch_of(self.held_out, 64).numpy()

    def report(self, format, directory, files, run, static_batch=None, notes=()) -> ExportReport:
        """Compare `run` (numpy inputs dict -> list of numpy outputs) with eager and time it.

        `static_batch=1` runs the artifact row by row and reports no batch-64 latency.
        """
        held, one, many = self.timing_inputs()
        count = len(next(iter(held.values())))
        if static_batch:
            rows = [run({k: v[i:i + 1] for k, v in held.items()}) for i in range(count)]
            outputs = [np.concatenate([r[j] for r in rows]) for j in range(len(rows[0]))]
        else:
            outputs = run(held)
        notes = list(notes) + ([f"static batch {static_batch}"] if static_batch else [])
        return self.measured(format, directory, files, outputs, median_ms(lambda: run(one)),
                             None if static_batch else median_ms(lambda: run(many)), notes)

    def measured(self, format, directory, files, outputs, latency_ms, latency_ms_64, notes=()) -> ExportReport:
        """The report of an artifact run elsewhere (a browser): its outputs on the held-out inputs and latencies."""
        if len(outputs) != len(self.outputs):
            raise RuntimeError(f"{format}: the artifact returns {len(outputs)} outputs, eager returns "
                               f"{len(self.outputs)}")
        diff = max(float(np.max(np.abs(np.asarray(a, np.float32) - b), initial=0.0))
                   for a, b in zip(outputs, self.outputs))
        eager_1, eager_64 = self.latencies
        return ExportReport(
            format=format, files=[str(f) for f in files], size_bytes=sum(_size(Path(directory) / f) for f in files),
            max_abs_diff=diff, latency_ms=latency_ms, latency_ms_64=latency_ms_64,
            eager_latency_ms=eager_1, eager_latency_ms_64=eager_64,
            accuracy=_accuracy(outputs[0], self.labels), eager_accuracy=self.accuracy, notes=list(notes))


def median_ms(call, budget_s=0.4, min_runs=5, max_runs=200) -> float:
    """Median wall time of `call()` in milliseconds, after two warm-up calls."""
    call(), call()
    times, started = [], time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - started < budget_s):
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def format_table(reports) -> str:
    """One row per format: files, size, max |diff|, accuracy, latency and speedup vs eager."""
    has_accuracy = any(r.accuracy is not None for r in reports)
    header = ["format", "files", "size", "max |diff|"] + (["accuracy (eager)"] if has_accuracy else []) + [
        "batch 1 ms (eager)", "speedup", "batch 64 ms (eager)", "speedup", "notes"]
    rows = [header]
    for r in reports:
        row = [r.format, ", ".join(r.files), _human_size(r.size_bytes), f"{r.max_abs_diff:.1e}"]
        if has_accuracy:
            row.append(f"{r.accuracy:.2%} ({r.eager_accuracy:.2%})" if r.accuracy is not None else "-")
        row += [f"{r.latency_ms:.3f} ({r.eager_latency_ms:.3f})", f"{r.speedup:.1f}x",
                f"{r.latency_ms_64:.2f} ({r.eager_latency_ms_64:.2f})" if r.latency_ms_64 else "-",
                f"{r.speedup_64:.1f}x" if r.speedup_64 else "-", "; ".join(r.notes)]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(reports) -> None:
    print(format_table(reports))


def _batch_of(inputs: ModelInputs, size) -> ModelInputs:
    # Repeat held-out rows to reach `size` (fewer held-out rows than 64 must still time batch 64).
    repeats = -(-size // inputs.batch_size)
    return inputs.with_tensors([t.repeat(repeats, *[1] * (t.dim() - 1))[:size] for t in inputs.tensors])


def _accuracy(outputs, labels):
    if labels is None:
        return None
    return float(np.mean(np.asarray(outputs).argmax(-1) == np.asarray(labels)))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
