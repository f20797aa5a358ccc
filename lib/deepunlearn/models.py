"""Model registry (timm style): the paper's ResNet-18 and TinyViT-11M, plus small CPU models."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from deepunlearn.errors import UserError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Decorator: register a builder `fn(num_classes, img_size) -> nn.Module` under `name`."""
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = fn
        return fn
    return deco


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_MODELS)


def create_model(name: str, num_classes: int, img_size: int = 32, seed: int | None = None) -> nn.Module:
    """Build `name` on the CPU; with `seed`, the initialisation is that seed's (spec B.3).

    The global RNG is forked, so building a model never disturbs the caller's random stream.
    """
    if name not in _MODELS:
        raise UserError(f"Unknown model {name!r}; choose one of {', '.join(list_models())}.")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return _MODELS[name](num_classes=num_classes, img_size=img_size)


@register_model("resnet18")
def resnet18(num_classes: int, img_size: int = 32) -> nn.Module:
    """torchvision's ImageNet-style ResNet-18 (7×7/2 stem and max-pool), as the reference uses (spec B.1)."""
    import torchvision

    return torchvision.models.resnet18(num_classes=num_classes)


@register_model("tinyvit")
def tinyvit(num_classes: int, img_size: int = 32) -> nn.Module:
    """TinyViT-11M (spec B.2) from timm: dims 64/128/256/448, depths 2/2/6/2, drop-path 0.1."""
    import timm

    # timm's TinyViT pads windows to the grid, so 32×32 input works without an img_size argument.
    return timm.create_model("tiny_vit_11m_224", pretrained=False, num_classes=num_classes, drop_path_rate=0.1)


class SmallResNet(nn.Module):
    """A ResNet with torchvision's module names (conv1, bn1, layer1.., fc) and chosen widths.

    Same names as ResNet-18 so every method's ResNet logic (blocks, conv1, fc, "bn") applies unchanged.
    """

    cpu_channels_last = True  # its narrow convolutions run 1.2x faster channels_last on CPU (training.to_device)

    def __init__(self, widths: tuple[int, ...], num_classes: int, stem_stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        cin = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
            setattr(self, f"layer{i + 1}", BasicBlock(cin, w, stride=stride, downsample=down))
            cin = w
        self.num_layers = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("smallresnet")
def smallresnet(num_classes: int, img_size: int = 32) -> nn.Module:
    """Demo model for CPUs: 4 residual stages of widths 16–128 after a stride-2 stem (~0.7M params)."""
    return SmallResNet((16, 32, 64, 128), num_classes)


@register_model("tinycnn")
def tinycnn(num_classes: int, img_size: int = 32) -> nn.Module:
    """Test model: 2 residual stages of widths 8 and 16 (a few thousand parameters)."""
    return SmallResNet((8, 16), num_classes)


# --- structure used by the block-wise methods (spec B.1, B.2) -----------------------------------

def blocks(model: nn.Module) -> list[nn.Module]:
    """The "blocks" of CF-k / EU-k: ResNet layer1..layerN; TinyViT stages 1–3 (stage 0 is a ConvLayer)."""
    if hasattr(model, "stages"):
        return list(model.stages)[1:]
    layers = [getattr(model, f"layer{i}") for i in range(1, 10) if hasattr(model, f"layer{i}")]
    if not layers:
        raise UserError(f"{type(model).__name__} has neither `stages` nor `layer1..`; add it to models.blocks.")
    return layers


def classifier(model: nn.Module) -> nn.Linear:
    """The final Linear layer: ResNet `fc`; timm TinyViT `head.fc` (its `head.norm` is not included)."""
    if hasattr(model, "fc"):
        return model.fc
    if hasattr(model, "head") and hasattr(model.head, "fc"):
        return model.head.fc
    raise UserError(f"{type(model).__name__} has no `fc` or `head.fc`; add it to models.classifier.")


def is_convnet(model: nn.Module) -> bool:
    """True for models whose compute is mostly convolutions (they get channels_last)."""
    return hasattr(model, "conv1")


def eval_for_training(model: nn.Module) -> nn.Module:
    """model.eval() for a method that trains in eval mode (frozen BatchNorm statistics).

    The reference's Microsoft TinyViT snapshots its attention biases under no_grad when put in eval
    mode, so they are constants there. timm's TinyViT caches them lazily instead, with the graph of the
    first forward, which the first backward frees (a crash on the second step). Filling the cache under
    no_grad reproduces the reference: in eval mode TinyViT's attention biases get no gradient.
    """
    model.eval()
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "attention_bias_cache") and hasattr(m, "get_attention_biases"):
                m.attention_bias_cache = {}
                m.get_attention_biases(m.attention_biases.device)
    return model
