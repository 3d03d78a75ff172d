"""Format "pte": an ExecuTorch program lowered to XNNPACK, verified in executorch.runtime (static batch)."""
import contextlib
from pathlib import Path

import torch

from ember.deploy.capture import capture
from ember.deploy.extras import require
from ember.deploy.inputs import ModelInputs
from ember.deploy.report import EagerBaseline, ExportReport
from ember.io import atomic_write_bytes

FORMAT = "pte"
FILE = "model.pte"


def export(model, directory: Path, inputs: ModelInputs, baseline: EagerBaseline, calibration_data=None) -> ExportReport:
    exir = require("executorch.exir", FORMAT, "executorch")
    partitioner = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", FORMAT, "executorch")
    runtime = require("executorch.runtime", FORMAT, "executorch")
    path = Path(directory) / FILE
    with contiguous_weights(model):
        program = capture(model, inputs.rows(0, 1), dynamic=False)
        lowered = exir.to_edge_transform_and_lower(program, partitioner=[partitioner.XnnpackPartitioner()])
        atomic_write_bytes(path, lowered.to_executorch().buffer)
    method = runtime.Runtime.get().load_program(path).load_method("forward")

    def run(feeds):
        return [o.float().numpy() for o in method.execute([torch.from_numpy(v) for v in feeds.values()])]
    return baseline.report(FORMAT, directory, [FILE], run, static_batch=1, notes=["XNNPACK, executorch.runtime"])


@contextlib.contextmanager
def contiguous_weights(model):
    """Give the model NCHW (contiguous) weights for a while: XNNPACK's layout pass rejects the channels_last
    weights ember trains convolutions with. The original tensors are put back afterwards."""
    originals = [(t, t.data) for t in [*model.parameters(), *model.buffers()] if not t.is_contiguous()]
    for tensor, data in originals:
        tensor.data = data.contiguous()
    try:
        yield
    finally:
        for tensor, data in originals:
            tensor.data = data
