"""What an export's `signature.json` says about its model (the file itself: `ember.signature`).

The server reads it instead of the Python class, so it must say names, dtypes, shapes
(-1 for variable dimensions), and for classifiers the task, labels and output kind.
"""
import numpy as np

from ember.deploy.inputs import ModelInputs

FIELDS = ("task", "labels", "output_kind", "tokenizer")


def build_signature(inputs: ModelInputs, output_names, outputs, overrides=None) -> dict:
    """The arguments of `ember.signature.write_signature` for this model.
    `outputs`: eager numpy outputs on some batch, used for shapes and to tell logits from probabilities."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown signature fields {sorted(unknown)}; known: {list(FIELDS)}")
    signature = {
        "inputs": [{"name": name, "dtype": str(tensor.numpy().dtype),
                    "shape": [-1 if d in inputs.variable_dims(tensor) else int(s) for d, s in enumerate(tensor.shape)]}
                   for name, tensor in zip(inputs.names, inputs.tensors)],
        "outputs": [{"name": name, "dtype": str(out.dtype), "shape": [-1, *map(int, out.shape[1:])]}
                    for name, out in zip(output_names, outputs)],
    }
    classifier = len(outputs) == 1 and outputs[0].ndim == 2 and np.issubdtype(outputs[0].dtype, np.floating)
    image_input = len(inputs.tensors) == 1 and inputs.tensors[0].dim() == 4 and inputs.tensors[0].is_floating_point()
    task = "image_classification" if classifier and image_input else None
    signature["task"] = overrides.get("task", task)
    classes = outputs[0].shape[1] if classifier else 0
    signature["labels"] = overrides.get("labels", [str(i) for i in range(classes)] if signature["task"] else None)
    signature["output_kind"] = overrides.get("output_kind", _output_kind(outputs[0]) if classifier else None)
    signature["tokenizer"] = overrides.get("tokenizer")
    if signature["labels"] is not None and classifier and len(signature["labels"]) != classes:
        raise ValueError(f"{len(signature['labels'])} labels given for a model with {classes} outputs per row")
    return signature


def _output_kind(rows: np.ndarray) -> str:
    looks_like_probabilities = (rows.min() >= 0 and rows.max() <= 1
                                and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))
    return "probabilities" if looks_like_probabilities else "logits"
