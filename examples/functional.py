"""The Keras functional API on ember: the ticket model of Keras' functional API guide.

Three inputs (a ticket's title and body as word ids, its tags) and two outputs (a priority score
and a department), written as a Keras user writes it: `ember.Input`, layers called on symbolic
tensors, `ember.Model(inputs, outputs)`. Then compile with a loss and a weight per output, fit on
dicts keyed by input and output name, save and load without this script, and export to ONNX with
named inputs and outputs.

The tickets are made up so that there is something to learn: a title with one of the "urgent"
words is high priority, and the body's words come mostly from its department's vocabulary.

    python examples/functional.py                 # EMBER_QUICK=1 for a fast run
"""
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import ember
from ember import layers

QUICK = os.environ.get("EMBER_QUICK") == "1"
OUT = Path(os.environ.get("EMBER_EXAMPLE_OUT", "out/examples")) / "functional"
NUM_TAGS, NUM_WORDS, NUM_DEPARTMENTS = 12, 1000, 4
URGENT_WORDS = np.arange(1, 21)


def build_ticket_model() -> ember.Model:
    """The guide's model, with `keras` replaced by `ember`."""
    title_input = ember.Input(shape=(None,), name="title", dtype="int64")  # a sequence of word ids, any length
    body_input = ember.Input(shape=(None,), name="body", dtype="int64")
    tags_input = ember.Input(shape=(NUM_TAGS,), name="tags")

    title_features = layers.Embedding(NUM_WORDS, 64)(title_input)  # the words embedded in 64 dimensions
    body_features = layers.Embedding(NUM_WORDS, 64)(body_input)
    title_features = layers.LSTM(128)(title_features)  # the title as one 128-dimensional vector
    body_features = layers.LSTM(32)(body_features)
    x = layers.concatenate([title_features, body_features, tags_input])

    priority_pred = layers.Dense(1, name="priority")(x)  # a logit
    department_pred = layers.Dense(NUM_DEPARTMENTS, name="department")(x)  # logits
    return ember.Model(inputs=[title_input, body_input, tags_input],
                       outputs={"priority": priority_pred, "department": department_pred}, name="tickets")


def make_tickets(count: int, rng: np.random.Generator):
    """(inputs, targets): dicts keyed by the model's input and output names."""
    departments = rng.integers(0, NUM_DEPARTMENTS, count)
    urgent = rng.random(count) < 0.3
    title = rng.integers(21, NUM_WORDS, (count, 10))
    title[urgent, rng.integers(0, 10, urgent.sum())] = rng.choice(URGENT_WORDS, urgent.sum())
    vocabulary_start = 100 + departments[:, None] * 200  # each department's 200 words, 70% of the body
    body = np.where(rng.random((count, 40)) < 0.7, vocabulary_start + rng.integers(0, 200, (count, 40)),
                    rng.integers(21, NUM_WORDS, (count, 40)))
    tags = rng.integers(0, 2, (count, NUM_TAGS)).astype("float32")
    inputs = {"title": title, "body": body, "tags": tags}
    targets = {"priority": urgent.astype("float32")[:, None], "department": departments}
    return inputs, targets


def main():
    ember.seed(0)
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_val, y_val) = make_tickets(1024 if QUICK else 4000, rng), make_tickets(512, rng)

    model = build_ticket_model()
    model.summary()  # with Keras' "Connected to" column
    model.compile(
        optimizer="rmsprop", learning_rate=1e-3,
        loss={"priority": "bce_with_logits", "department": "cross_entropy"},
        loss_weights={"priority": 1.0, "department": 0.2},
        metrics={"department": ["accuracy"]},
    )
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=1 if QUICK else 2,
                        batch_size=32, verbose=0 if QUICK else 1)
    print("history keys:", sorted(history.history))  # loss, priority_loss, department_accuracy, val_...

    predicted = model.predict(x_val)  # a dict, as the outputs were given
    priority_accuracy = ((predicted["priority"][:, 0] > 0) == (y_val["priority"][:, 0] > 0.5)).mean()
    department_accuracy = (predicted["department"].argmax(1) == y_val["department"]).mean()
    print(f"validation: priority accuracy {priority_accuracy:.3f}, department accuracy {department_accuracy:.3f}")
    if not QUICK:
        assert priority_accuracy > 0.9 and department_accuracy > 0.9, (priority_accuracy, department_accuracy)

    # The file holds the graph as JSON and the weights: ember.load rebuilds it without this script.
    model.save(OUT / "tickets.ember")
    restored = ember.load(OUT / "tickets.ember")
    again = restored.predict(x_val)
    assert all(np.allclose(again[name], predicted[name], atol=1e-5) for name in predicted)

    # ONNX with the inputs and outputs named as in the model, checked against eager.
    example = {name: values[:4] for name, values in x_val.items()}
    print(model.export(OUT / "export", format="onnx", example=example))
    session = ort.InferenceSession(str(OUT / "export" / "model.onnx"))
    print("ONNX inputs:", [i.name for i in session.get_inputs()], "outputs:", [o.name for o in session.get_outputs()])
    feed = {i.name: x_val[i.name][:4].astype(np.int64 if i.type == "tensor(int64)" else np.float32)
            for i in session.get_inputs()}
    onnx_outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    with torch.no_grad():  # eager in float32 (predict may run in bfloat16 where the CPU is fast at it)
        eager = restored({name: torch.as_tensor(values) for name, values in example.items()})
    assert all(np.allclose(onnx_outputs[name], eager[name].numpy(), atol=1e-4) for name in eager)
    print(f"serve it: ember serve {OUT / 'export'}")


if __name__ == "__main__":
    main()
