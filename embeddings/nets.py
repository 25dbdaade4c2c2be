"""Networks: the small CNN backbone (trained from scratch on a CPU), spatial attention, the embedding
head, and the raster-to-tensor conversion they share. The losses are in :mod:`embeddings.losses`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketch_env.errors import ArgumentError
from sketch_env.limits import load_torch_file

__all__ = [
    "raster_tensor",
    "SpatialAttention",
    "SmallCNN",
    "Branch",
    "torchvision_backbone",
]


def raster_tensor(rasters, device: torch.device | str) -> torch.Tensor:
    """uint8 rasters ``(B, H, W)`` (NumPy) as the networks' input: float32 ``(B, 1, H, W)`` in [0, 1] on ``device``."""
    import numpy as np

    x = torch.from_numpy(np.ascontiguousarray(rasters)).to(device)
    return x.unsqueeze(1).float().div_(255.0)


class SpatialAttention(nn.Module):
    """Soft spatial attention with a residual connection (Deep Spatial-Semantic Attention, Song et al.
    ICCV 2017): ``a = softmax_{hw}(conv1x1(relu(conv3x3(x))))`` over the H x W positions, rescaled so a
    uniform map is 1, and ``y = x + x * a``. The residual keeps the un-attended signal, so attention can
    only re-weight, never erase, what the backbone sees.
    """

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, hidden, 3, padding=1)
        self.score = nn.Conv2d(hidden, 1, 1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        logits = self.score(F.relu(self.conv(x))).view(b, h * w)
        return (torch.softmax(logits, dim=1) * (h * w)).view(b, 1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * self.attention_map(x)


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A 4-conv CNN for single-channel rasters, sized for a 2-core CPU (about 250k weights at the default
    widths): stride-2 convolutions down to 1/8 of the input, optional :class:`SpatialAttention` on the
    last map, then pooling. ``pool="pyramid"`` concatenates global average pooling with a 2 x 2 average
    grid, so the pooled feature keeps where the strokes are (fine-grained retrieval needs layout);
    ``pool="gap"`` is global average pooling only.
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 128), attention: bool = True,
                 pool: str = "pyramid", in_channels: int = 1) -> None:
        super().__init__()
        if pool not in ("gap", "pyramid"):
            raise ArgumentError(f"pool must be 'gap' or 'pyramid', got {pool!r}")
        layers = []
        cin = in_channels
        for i, cout in enumerate(channels):
            layers.append(_conv_block(cin, cout, stride=1 if i == len(channels) - 1 else 2))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.attention = SpatialAttention(cin) if attention else None
        self.pool = pool
        self.out_dim = cin * (5 if pool == "pyramid" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        if self.attention is not None:
            x = self.attention(x)
        gap = x.mean(dim=(2, 3))
        if self.pool == "gap":
            return gap
        grid = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.cat([gap, grid], dim=1)


def torchvision_backbone(arch: str, weights_path: str | None = None) -> tuple[nn.Module, int]:
    """An optional torchvision backbone (``resnet18``, ``resnet34``, ``resnet50``, ``mobilenet_v3_small``)
    with its classifier removed, taking 1-channel input by repeating it to 3 channels; weights come
    from a user-given file (``torch.load(weights_only=True)``), never from the internet.
    """
    try:
        import torchvision.models as tvm
    except ImportError as exc:
        raise RuntimeError("backbone 'torchvision:*' needs torchvision installed (pip install torchvision)") from exc
    model = getattr(tvm, arch)(weights=None)
    if weights_path is not None:
        state = load_torch_file(weights_path)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    if hasattr(model, "fc"):
        out_dim = model.fc.in_features
        model.fc = nn.Identity()
    else:
        out_dim = model.classifier[0].in_features
        model.classifier = nn.Identity()

    class _Gray(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.out_dim = out_dim

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.expand(-1, 3, -1, -1))

    return _Gray(), out_dim


class Branch(nn.Module):
    """Backbone + final embedding layer: ``features(x)`` is the pooled feature f, ``embed(x)`` is
    ``normalise(W f + b)``."""

    def __init__(self, backbone: nn.Module, feature_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, embed_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def embed_features(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(f), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.features(x))
