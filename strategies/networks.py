"""Backbones and the growing classifier used by every strategy.

- ``simplecnn``: the course notebook's small 3-convolution CNN (conv-BN-ReLU-pool
  three times, then a 256-unit feature layer).
- ``resnet32``: the CIFAR ResNet of He et al. 2016 (§4.2: 6n+2 layers, n = 5,
  16/32/64 channels, global average pooling) that iCaRL (Rebuffi et al. 2017) and
  PyCIL use for CIFAR-100.
- ``vgg16``: torchvision's VGG-16 features for the PackNet image sequences
  (Mallya & Lazebnik 2018); ImageNet weights only when already cached locally.

``IncrementalNet`` = backbone + a linear head whose output grows as classes
arrive (class-incremental learning adds columns; old columns keep their weights).
Backbones adapt to any input channel count and image size (adaptive pooling), so
the 8x8 digits, 32x32 GTSRB/CIFAR and larger ImageFolder images all work.
"""
from __future__ import annotations

import sys

import torch
from torch import nn
import torch.nn.functional as F


class SimpleCNN(nn.Module):
    def __init__(self, in_channels: int = 3, feature_dim: int = 256) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            )

        self.convs = nn.Sequential(block(in_channels, 32), block(32, 64), block(64, 128))
        # Adaptive pooling to 2x2 keeps the feature layer the same size for 8x8 and
        # 32x32 inputs (32 -> 4x4 -> pooled 2x2; 8 -> 1x1 -> upsampled 2x2).
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(128 * 4, feature_dim), nn.ReLU(inplace=True))
        self.out_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.convs(x)))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet32(nn.Module):
    """CIFAR ResNet-32 (n = 5 basic blocks per stage), 64-d features."""

    def __init__(self, in_channels: int = 3, blocks_per_stage: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(blocks_per_stage):
                layers.append(_BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 64
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


_VGG16_INIT_SAID: set[tuple[bool, bool]] = set()


def _say_vgg16_init(asked: bool, loaded: bool, cache: str | None) -> None:
    """Tell the user once per process which initialisation vgg16 got (DER builds
    one extractor per task; one line is enough)."""
    if (asked, loaded) in _VGG16_INIT_SAID:
        return
    _VGG16_INIT_SAID.add((asked, loaded))
    if loaded:
        msg = f"vgg16: ImageNet weights loaded from the torch hub cache ({cache})"
    elif asked:
        msg = f"vgg16: random init (ImageNet weights asked for but not cached at {cache}; nothing is downloaded)"
    else:
        msg = "vgg16: random init (use --pretrained to start from cached ImageNet weights)"
    print(msg, file=sys.stderr, flush=True)


class VGG16Features(nn.Module):
    """torchvision VGG-16 convolutional trunk + global pooling (512-d features).

    Five max-pools: inputs must be at least 32 x 32."""

    def __init__(self, in_channels: int = 3, pretrained: bool = False) -> None:
        super().__init__()
        from datasets._tv import import_torchvision

        tv = import_torchvision()
        weights = None
        self.pretrained_loaded = False
        if pretrained:
            weights = tv.models.VGG16_Weights.IMAGENET1K_V1
            # Only use weights already in the torch hub cache: this project never
            # downloads at run time, and says in the output which init it used.
            import os
            cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
            if not os.path.exists(cache):
                weights = None
        self.pretrained_loaded = weights is not None
        _say_vgg16_init(pretrained, self.pretrained_loaded, cache if pretrained else None)
        if weights is None:
            # Only the convolutional trunk: building vgg16() would also create and
            # initialise its unused 102M-parameter classifier (~0.4 GB, seconds).
            features = tv.models.vgg.make_layers(tv.models.vgg.cfgs["D"])
        else:
            features = tv.models.vgg16(weights=weights).features
        if in_channels != 3:
            features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


BACKBONES = ("simplecnn", "resnet32", "vgg16")


def build_backbone(name: str, in_channels: int, pretrained: bool = False) -> nn.Module:
    if name == "simplecnn":
        return SimpleCNN(in_channels)
    if name == "resnet32":
        return ResNet32(in_channels)
    if name == "vgg16":
        return VGG16Features(in_channels, pretrained=pretrained)
    raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")


class IncrementalHead(nn.Module):
    """A linear classifier whose output grows; old rows are copied unchanged."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(0, in_features))
        self.bias = nn.Parameter(torch.empty(0))

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def add_classes(self, n: int) -> None:
        new = nn.Linear(self.in_features, n).to(self.weight.device)
        with torch.no_grad():
            self.weight = nn.Parameter(torch.cat([self.weight.data, new.weight.data.to(self.weight.dtype)]))
            self.bias = nn.Parameter(torch.cat([self.bias.data, new.bias.data.to(self.bias.dtype)]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.weight, self.bias)


class IncrementalNet(nn.Module):
    """Backbone + growing head. ``forward`` returns logits over all classes so far."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = IncrementalHead(backbone.out_dim)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def add_classes(self, n: int) -> None:
        self.head.add_classes(n)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
