"""Spec A.2 transforms, batched on the device on uint8 tensors (no per-sample PIL work)."""

from __future__ import annotations

import numpy as np
import torch


def resize_stack(images: np.ndarray, size: int) -> np.ndarray:
    """Resize N×H×W(×3) uint8 images to size×size with PIL bilinear, as torchvision's Resize on PIL.

    Done once when a dataset is prepared, so every later batch is identical to the per-sample path.
    """
    from PIL import Image

    if images.shape[1] == size and images.shape[2] == size:
        return images
    out = np.empty((len(images), size, size) + images.shape[3:], dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    return out


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """N×H×W or N×H×W×C uint8 array → contiguous N×C×H×W uint8 tensor (grey stays one channel)."""
    t = torch.from_numpy(np.ascontiguousarray(images))
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.contiguous()


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 N×c×H×W → float N×3×H×W: ToTensor (÷255), grey→RGB, then (x − mean) / std."""
    x = x.float().div_(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 0.5 (RandomHorizontalFlip)."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """RandomCrop(size, padding) with zero fill, one offset per image, by a single gather."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = (oy.view(n, 1, 1, 1) + ar_h.view(1, 1, h, 1)).expand(n, c, h, w + 2 * padding)
    cols = (ox.view(n, 1, 1, 1) + ar_w.view(1, 1, 1, w)).expand(n, c, h, w)
    out = padded.gather(2, rows)
    return out.gather(3, cols)


def augment(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Train-state augmentation of spec A.2 on uint8 images: 'flip', 'crop_flip' or 'none'."""
    if kind == "crop_flip":
        x = random_crop(x, generator)
    if kind in ("flip", "crop_flip"):
        x = random_flip(x, generator)
    return x
