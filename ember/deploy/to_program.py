"""Format "program": `model.pt2` (torch.export, TorchScript's successor), dynamic batch."""
from pathlib import Path

import torch

from ember.deploy.capture import capture
from ember.deploy.inputs import ModelInputs, output_list
from ember.deploy.report import EagerBaseline, ExportReport

FORMAT = "program"
FILE = "model.pt2"


def export(model, directory: Path, inputs: ModelInputs, baseline: EagerBaseline, calibration_data=None) -> ExportReport:
    path = Path(directory) / FILE
    torch.export.save(capture(model, inputs), str(path))
    # Reload from the file: the graph module knows nothing of the model's Python class.
    module = torch.export.load(str(path)).module()

    def run(feeds):
        tensors = {name: torch.from_numpy(value) for name, value in feeds.items()}
        with torch.inference_mode():
            outputs = module(**tensors) if inputs.keyword else module(*tensors.values())
        return [o.float().numpy() for o in output_list(outputs)]
    return baseline.report(FORMAT, directory, [FILE], run, notes=["torch.export.load"])
