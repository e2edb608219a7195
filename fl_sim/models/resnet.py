"""ResNet-18 for small images: torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool.

This is the CIFAR variant of He et al. used throughout the gradient-inversion literature
(Geiping et al., 2020). ``norm="group"`` swaps BatchNorm for GroupNorm, which suits federated
training (no running statistics to average) and is what PRECODE's follow-up CVB evaluates.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18 as tv_resnet18

from fl_sim.models.base import FeatureClassifier


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(32, channels), num_channels=channels)


def resnet18(input_shape: tuple[int, int, int], num_classes: int, norm: str = "group") -> FeatureClassifier:
    """ResNet-18 adapted to 32x32-like inputs, with BatchNorm or GroupNorm."""
    net = tv_resnet18(weights=None, num_classes=num_classes,
                      norm_layer=_group_norm if norm == "group" else nn.BatchNorm2d)
    net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    features = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                             net.layer3, net.layer4, net.avgpool, nn.Flatten())
    return FeatureClassifier(features, net.fc, net.fc.in_features)
