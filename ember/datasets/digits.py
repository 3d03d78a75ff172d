"""scikit-learn's handwritten digits (1,797 real 8x8 scans), upsampled to MNIST's 28x28."""
import numpy as np
import torch
import torch.nn.functional as F


def load_digits(size=28, validation_fraction=0.2, seed=0, channels_last=False):
    """`(x_train, y_train), (x_val, y_val)`: float32 images in [0, 1], int64 labels.

    The split is fixed (a permutation from `seed`), so runs are comparable. Images are
    (N, 1, size, size), or (N, size, size, 1) with `channels_last=True` (Keras' layout).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    x = images.clamp(0, 1).numpy()
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    cut = len(x) - int(round(len(x) * validation_fraction))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])
