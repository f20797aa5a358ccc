"""Training throughput: our device-resident loop vs the loop a user would write with torchvision.

Same model, same data (Fashion-MNIST by default), same optimiser, same process. The reference is
the paper's loader setup: a torchvision-style Dataset with per-sample PIL transforms (grey→RGB,
Resize 32, RandomHorizontalFlip, ToTensor, Normalize) and a DataLoader with num_workers = CPUs // 2,
pin_memory=False, on the model as torchvision builds it (`model.to(device)`). Ours runs the same
weights through `training.to_device` (on CPU: convolutions over maps smaller than their kernel as
dense products, see deepunlearn.kernels). Prints images/s of both, their ratio, and the fraction of
this machine's measured fp32 matmul peak that our loop reaches (FLOPs per step from
torch.utils.flop_counter: nominal = the convolutions as defined; executed = what our loop computes).

    python bench/train_throughput.py [--arch resnet18] [--dataset fashion_mnist] [--images 4096]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from deepunlearn.data import load_device_data, make_generator
from deepunlearn.models import create_model
from deepunlearn.training import Timer, sgd, to_device, train_epoch


class PILDataset(torch.utils.data.Dataset):
    """What a user writes: one PIL image per __getitem__, torchvision transforms per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_loop(model, images, labels, info, batch_size, device, epochs):
    """Images/s of a plain torchvision DataLoader loop (the reference)."""
    import torchvision.transforms as T

    tf = T.Compose([T.Lambda(lambda im: im.convert("RGB")), T.Resize((32, 32)), T.RandomHorizontalFlip(),
                    T.ToTensor(), T.Normalize(info.mean, info.std)])
    loader = torch.utils.data.DataLoader(PILDataset(images, labels, tf), batch_size=batch_size, shuffle=True,
                                         num_workers=max(1, (os.cpu_count() or 2) // 2), pin_memory=False)
    opt = sgd(model, 0.01)
    model.train()

    def one_epoch():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    one_epoch()  # warm-up: allocator, oneDNN primitive caches (workers start each epoch, as by default)
    with Timer(device) as t:
        for _ in range(epochs):
            one_epoch()
    return epochs * len(labels) / t.seconds


def our_loop(model, data, batch_size, epochs):
    """Images/s of deepunlearn's loop: uint8 data on the device, batched augmentation."""
    opt = sgd(model, 0.01)
    g = make_generator(data.device, 0)
    batches = lambda: data.batches("retain", batch_size, shuffle=True, augment=True, generator=g)
    train_epoch(model, opt, batches())  # warm-up
    with Timer(data.device) as t:
        for _ in range(epochs):
            train_epoch(model, opt, batches())
    return epochs * data.size("retain") / t.seconds


def matmul_peak(device: torch.device, sizes: tuple[int, ...] = (512, 1024, 2048), reps: int = 10) -> float:
    """Measured fp32 matmul FLOP/s of this device (best over a few n×n products of each size)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b
        for _ in range(reps):
            with Timer(device) as t:
                a @ b
            best = max(best, 2 * n**3 / t.seconds)
    return best


def train_flops_per_image(model, device, batch_size: int) -> float:
    """Forward + backward FLOPs of one training step divided by the batch size."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch_size, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / batch_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--images", type=int, default=4096, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)

    data = load_device_data(args.dataset, device, subset=int(args.images / 0.765) + 1)  # retain ≈ 76.5% of dev
    data = data.with_splits(retain=data.splits["retain"][:args.images])
    idx = data.splits["retain"].cpu()
    raw = data.images[idx].cpu()
    # the reference reads the original 28×28 images and resizes per sample, as torchvision would
    from deepunlearn.data.registry import get_dataset_info, require

    info = get_dataset_info(args.dataset)
    images, labels, _ = info.read(require(args.dataset))
    images, labels = images[idx.numpy()], labels[idx.numpy()]
    assert raw.shape[0] == len(labels)

    torch.manual_seed(0)

    def model() -> torch.nn.Module:
        return create_model(args.arch, info.num_classes, seed=0)  # the same weights on every call

    # ours first, so no DataLoader worker process of the reference is alive while ours is timed
    ours = our_loop(to_device(model(), device), data, args.batch_size, args.epochs)
    ref = reference_loop(model().to(device), images, labels, info, args.batch_size, device, args.epochs)
    nominal = train_flops_per_image(model().to(device), device, args.batch_size)
    executed = train_flops_per_image(to_device(model(), device), device, args.batch_size)
    peak = matmul_peak(device)
    print(f"device={device.type} arch={args.arch} dataset={args.dataset} images/epoch={len(labels)} "
          f"batch={args.batch_size} threads={torch.get_num_threads()}")
    print(f"reference DataLoader loop : {ref:9.1f} images/s")
    print(f"deepunlearn loop          : {ours:9.1f} images/s")
    print(f"ratio (ours / reference)  : {ours / ref:9.2f}")
    print(f"training FLOPs per image  : {nominal / 1e9:9.3f} GFLOP nominal, {executed / 1e9:.3f} executed by ours")
    print(f"fp32 matmul peak          : {peak / 1e9:9.1f} GFLOP/s")
    print(f"fraction of matmul peak   : {ours * executed / peak:9.2%} executed "
          f"({ours * nominal / peak:.2%} at nominal FLOPs; reference {ref * nominal / peak:.2%})")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"wall time                 : {time.time() - t0:9.1f} s")
