"""Seed block "Distributed Training": PyTorch's FSDP for large models and TensorFlow's
MirroredStrategy / MultiWorkerMirroredStrategy, each as one fit() argument.

    ember launch -n 2 examples/distributed.py     # 2 processes here (torchrun --nproc-per-node=2 works too)
    python examples/distributed.py                # no launcher: one process, same code
Several machines: the `ember launch --nnodes=...` command in docs/guides/distributed.md.
"""
import os
import tempfile
from pathlib import Path

import ember
from ember.datasets import load_digits
from define_keras import build_convnet
from define_pytorch import ConvNet


def fsdp_block(epochs, limit=None):
    """PyTorch FSDP (Fully Sharded Data Parallel), for models that don't fit on a single GPU.
    Seed: FSDP(model, cpu_offload=CPUOffload(offload_params=True), auto_wrap_policy=...);
    here each repeated block is wrapped automatically (the ConvNet has none: one shard group)."""
    (x, y), validation = load_digits()
    x, y = x[:limit], y[:limit]
    strategy = ember.distributed.FSDP(cpu_offload=True)
    model = ConvNet(num_classes=10)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=epochs, strategy=strategy, verbose=int(strategy.is_main))
    return model, strategy, validation


def mirrored_block(epochs, limit=None):
    """TensorFlow: `with tf.distribute.MirroredStrategy().scope(): model = build_model();
    model.compile(...)`, then `model.fit(dataset, epochs=10)`; MultiWorkerMirroredStrategy for
    several machines. In ember both are DDP: the global batch is split across every process
    on every machine, so the result matches one process."""
    (x, y), validation = load_digits(channels_last=True)  # NHWC, as Keras takes it
    x, y = x[:limit], y[:limit]
    model = build_convnet(num_classes=10)
    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    strategy = ember.distributed.DDP()
    model.fit(x, y, batch_size=64, epochs=epochs, strategy=strategy, verbose=int(strategy.is_main))
    return model, strategy, validation


def main(epochs=5, limit=None):
    ember.seed(0)  # the same seed on every process: same initial weights and batch order
    for block in (fsdp_block, mirrored_block):
        model, strategy, (val_x, val_y) = block(epochs, limit)
        results = model.evaluate(val_x, val_y)  # every process evaluates; the logs are reduced
        if strategy.is_main:
            print(f"{block.__name__}: {strategy.world_size} process(es), "
                  f"validation accuracy {results['accuracy']:.4f}")
    # A sharded checkpoint: every process writes its part (so every process calls this); it
    # loads back into any number of processes, or into one with ember.distributed.load_checkpoint.
    checkpoint = ember.distributed.save_checkpoint(model, Path(tempfile.gettempdir()) / "ember-distributed")
    if strategy.is_main:
        print(f"sharded checkpoint: {checkpoint}")


if __name__ == "__main__":
    quick = os.environ.get("EMBER_QUICK") == "1"
    main(epochs=1 if quick else 5, limit=256 if quick else None)
