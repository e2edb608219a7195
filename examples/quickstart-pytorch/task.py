"""quickstart-pytorch: the model, the data and the train/test loops."""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SEED = 42


class Net(nn.Module):
    """A small MLP for 1x32x32 gray images and 10 classes.

    The first layer is fully connected on purpose (``Flatten`` then ``Linear(1024, 256)``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 32, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits for a batch of images of shape (N, 1, 32, 32)."""
        return self.layers(x)


def load_data(partition_id: int, num_partitions: int, batch_size: int) -> tuple[DataLoader, DataLoader]:
    """Load one IID partition of scikit-learn's digits as 1x32x32 images in [0, 1].

    The 8x8 digits (values 0..16) are scaled to [0, 1] and upsampled bilinearly to 32x32. A seeded
    shuffle splits them into ``num_partitions`` IID parts, the same on every call; partition
    ``partition_id`` is split 80% / 20% into train and test.

    Returns:
        ``(trainloader, testloader)``; only the train loader shuffles.
    """
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.long)

    order = np.random.default_rng(SEED).permutation(len(labels))
    part = torch.from_numpy(np.array_split(order, num_partitions)[partition_id])
    num_train = int(0.8 * len(part))
    train_idx, test_idx = part[:num_train], part[num_train:]

    trainloader = DataLoader(TensorDataset(images[train_idx], labels[train_idx]), batch_size=batch_size, shuffle=True)
    testloader = DataLoader(TensorDataset(images[test_idx], labels[test_idx]), batch_size=batch_size)
    return trainloader, testloader


def train(net: nn.Module, trainloader: DataLoader, epochs: int, lr: float, device: str | torch.device) -> float:
    """Train ``net`` with plain SGD (no momentum, no weight decay) and cross-entropy.

    Returns:
        The average training loss over all batches of all epochs.
    """
    net.to(device)
    net.train()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    total_loss, num_batches = 0.0, 0
    for _ in range(epochs):
        for images, labels in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(images.to(device)), labels.to(device))
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            num_batches += 1
    return total_loss / max(num_batches, 1)


def test(net: nn.Module, testloader: DataLoader, device: str | torch.device) -> tuple[float, float]:
    """Evaluate ``net`` on ``testloader``.

    Returns:
        ``(loss, accuracy)``: the average cross-entropy per example and the fraction classified right.
    """
    net.to(device)
    net.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in testloader:
            images, labels = images.to(device), labels.to(device)
            outputs = net(images)
            total_loss += criterion(outputs, labels).item()
            correct += (outputs.argmax(dim=1) == labels).sum().item()
    num_examples = max(len(testloader.dataset), 1)
    return total_loss / num_examples, correct / num_examples
