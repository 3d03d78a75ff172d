"""Seed block "PyTorch — explicit training loop": the seed's train() runs unchanged beside
ember — and the same ConvNet trains with `ember.wrap(model).fit(...)` in three lines."""
import os
import time

import torch
import torch.nn as nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.datasets import load_digits
from define_pytorch import ConvNet


def train(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    num_epochs: int = 10,
    device: str = "cuda" if torch.cuda.is_available() else "cpu",
) -> dict:
    """The seed's loop, verbatim."""
    model = model.to(device)
    optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    scheduler = CosineAnnealingLR(optimizer, T_max=num_epochs)
    criterion = nn.CrossEntropyLoss()
    history = {"train_loss": [], "val_accuracy": []}
    for epoch in range(num_epochs):
        # Training phase
        model.train()
        running_loss = 0.0
        for batch_idx, (data, targets) in enumerate(train_loader):
            data, targets = data.to(device), targets.to(device)
            optimizer.zero_grad()
            outputs = model(data)
            loss = criterion(outputs, targets)
            loss.backward()
            # Gradient clipping — prevents exploding gradients
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            running_loss += loss.item()
            if batch_idx % 100 == 0:
                print(f"Epoch {epoch+1}, Batch {batch_idx}: Loss = {loss.item():.4f}")
        scheduler.step()
        # Validation phase
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for data, targets in val_loader:
                data, targets = data.to(device), targets.to(device)
                outputs = model(data)
                _, predicted = outputs.max(1)
                correct += predicted.eq(targets).sum().item()
                total += targets.size(0)
        val_acc = correct / total
        history["train_loss"].append(running_loss / len(train_loader))
        history["val_accuracy"].append(val_acc)
        print(f"Epoch {epoch+1}: Val Accuracy = {val_acc:.4f}")
    return history


def fit_with_ember(model, x, y, x_val, y_val, num_epochs):
    """The same training (AdamW, cosine schedule per epoch, clipping at 1.0) through fit()."""
    model = ember.wrap(model)
    model.compile("adamw", lr=1e-3, weight_decay=1e-4, loss="cross_entropy", metrics=["accuracy"],
                  lr_schedule="cosine", clip_grad_norm=1.0)
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=num_epochs, batch_size=64)
    return {"train_loss": history.history["loss"], "val_accuracy": history.history["val_accuracy"]}


def main(num_epochs):
    (x, y), (x_val, y_val) = load_digits()
    to_loader = lambda a, b, shuffle: DataLoader(TensorDataset(torch.from_numpy(a), torch.from_numpy(b)),
                                                 batch_size=64, shuffle=shuffle)
    ember.seed(0)
    started = time.perf_counter()
    seed_history = train(ConvNet(), to_loader(x, y, True), to_loader(x_val, y_val, False), num_epochs, "cpu")
    seed_seconds = time.perf_counter() - started
    ember.seed(0)
    started = time.perf_counter()
    ember_history = fit_with_ember(ConvNet(), x, y, x_val, y_val, num_epochs)
    ember_seconds = time.perf_counter() - started
    print(f"seed loop: val accuracy {seed_history['val_accuracy'][-1]:.4f} in {seed_seconds:.1f}s")
    print(f"ember fit: val accuracy {ember_history['val_accuracy'][-1]:.4f} in {ember_seconds:.1f}s")
    return seed_history, ember_history


if __name__ == "__main__":
    main(num_epochs=1 if os.environ.get("EMBER_QUICK") == "1" else 10)
