"""Seed block "PyTorch — Pythonic and explicit": the ConvNet as an ember.Model.

The class is the seed's, unchanged but for its base class (`ember.Model` instead of
`nn.Module`), which adds summary/compile/fit/evaluate/predict/save/export.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import ember


class ConvNet(ember.Model):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        # Explicit layer definitions
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Explicit forward pass — easy to debug
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.dropout(x)
        x = x.view(x.size(0), -1)  # Flatten
        x = F.relu(self.fc1(x))
        x = self.dropout(x)
        return self.fc2(x)


if __name__ == "__main__":
    # Instantiate and inspect
    model = ConvNet(num_classes=10)
    print(model)  # Full architecture visible: still PyTorch's repr
    total_params = sum(p.numel() for p in model.parameters())
    print(f"Parameters: {total_params:,}")
    model.summary(input_shape=(1, 28, 28))  # and Keras' table, with output shapes
    assert total_params == 421_642
