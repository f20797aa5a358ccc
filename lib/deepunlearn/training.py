"""The one training / evaluation loop every stage uses: O and R training, methods' inner loops, metrics.

Data stays on the device (see data.loader); convnets run channels_last on CUDA (the narrow ResNets on
CPU too) and convolutions over maps smaller than their kernel run as dense products on CPU (see
kernels); CUDA runs under bf16 autocast; inference runs under `torch.inference_mode`. Times are read after a device synchronize.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.data.loader import DeviceData, Split, make_generator
from deepunlearn.fold import folded
from deepunlearn.kernels import use_small_map_convs
from deepunlearn.models import is_convnet

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
T = TypeVar("T")


MMAP_THRESHOLD = 256 << 20  # bytes: smaller blocks come from the heap, not a fresh mapping each
TRIM_THRESHOLD = 512 << 20  # bytes of free heap top kept before any is handed back to the OS
_ALLOCATOR_TUNED = False


def hold_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks for reuse (fixed mmap and trim thresholds); True if it applied.

    By default a CPU tensor of a few MB (an activation at batch 128) is mapped afresh, or the heap is
    trimmed after it is freed, so every training step faults in and zeroes fresh pages (about a
    thousand a step on the demo's model: `bench/held_memory.py` prints the faults and seconds of both).
    With the thresholds fixed, a step reuses the previous step's memory. The numbers computed are the
    same; only where their memory comes from changes. A no-op off glibc (macOS, musl) and after the first call.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, MMAP_THRESHOLD) == 1 and libc.mallopt(-1, TRIM_THRESHOLD) == 1  # M_MMAP_, M_TRIM_
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


def global_rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global torch RNG states a computation on `device` draws from (CPU, and CUDA there): dropout, drop-path."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_global_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    """Put back what `global_rng_state` returned."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; full fp32 elsewhere (CPU results stay bit-reproducible)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a clock read measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall-clock seconds of a `with` block, synchronising the device at both ends."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds = 0.0

    def __enter__(self) -> Timer:  # noqa: PYI034
        sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds += time.perf_counter() - self._t0


def matmul_gflops(device: torch.device | str = "cpu", seconds: float = 0.05) -> float:
    """fp32 matmul GFLOP/s of `device` right now: square products repeated for about `seconds` (a speed probe).

    Short on purpose: it is taken before and after every timed run, so that a time measured while
    another process held the machine can be recognised and re-timed (RTE, spec E.4). This process's
    probes are remembered: the machine's quiet speed is read from them (`quiet_gflops`).
    """
    device = torch.device(device)
    n = 2048 if device.type == "cuda" else 256  # big enough to reach BLAS speed, small enough for ~1 ms a product
    gen = torch.Generator(device).manual_seed(0)  # its own RNG: probing between epochs must not shift training's
    a, b = torch.randn(n, n, device=device, generator=gen), torch.randn(n, n, device=device, generator=gen)
    a @ b  # warm-up: allocation and BLAS thread start
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        if reps % 4 == 0:
            sync(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
    speed = 2 * n**3 * reps / elapsed / 1e9
    _PROBES.setdefault(device.type, deque(maxlen=256)).append(speed)
    return speed


# ---------------------------------------------------------------- run times a ratio can rest on (RTE)

LOAD_SLACK = 0.2  # a probe this far below the quiet speed means another process shared the machine
TRIES = 3  # timed attempts at most (the first included) while the probes keep showing load
QUIET_QUANTILE = 0.9  # of this process's probes: the quiet speed (not the fastest, see `quiet_gflops`)
_PROBES: dict[str, deque] = {}  # device type -> this process's latest probes (GFLOP/s)


def quiet_gflops(device: torch.device | str = "cpu") -> float:
    """The machine's quiet speed as this process saw it: the 90th percentile of its probes (0 before the first).

    Not the fastest probe: on a quiet 2-core CPU, 50 ms probes spread from 0.85x to 1.2x their median, so
    the fastest of a few hundred sits far out in that tail and every ordinary probe would then look
    loaded (17% of 200 did; none against the 95th percentile); a loaded probe mostly reads ~50x slower.
    """
    return quantile(_PROBES.get(torch.device(device).type, ()), QUIET_QUANTILE)


def quantile(values: Iterable[float], q: float) -> float:
    """The nearest-rank `q` quantile of `values` (0 when there are none)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def median(values: Iterable[float]) -> float:
    """The median of `values` (the mean of the middle two for an even count)."""
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def machine_id(device: torch.device | str = "cpu") -> str:
    """Host and device model: probes stored under another id describe another machine's speed."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return f"{platform.node()}/{name}/{torch.get_num_threads()} threads"


def timed_attempt(fn: Callable[[], tuple[T, float]], probe: Callable[[], float]) -> tuple[T, dict]:
    """Call `fn` (it returns (result, its timed seconds)) between two speed probes: (result, the attempt)."""
    before = probe()
    value, seconds = fn()
    return value, {"seconds": seconds, "gflops": {"before": before, "after": probe()}}


def is_loaded(gflops: dict, quiet: float, slack: float = LOAD_SLACK) -> bool:
    """True when a probe around a run fell more than `slack` below the quiet speed (another process ran)."""
    return min(gflops["before"], gflops["after"]) < (1 - slack) * quiet


def retime(fn: Callable[[], tuple[object, float]], probe: Callable[[], float], first: dict, *,
           quiet: float = 0.0, tries: int = TRIES) -> list[dict]:
    """`first` and new attempts of `fn` while the latest one ran loaded, `tries` in all at most (results dropped).

    Load is judged against the fastest probe known: `quiet` (what the caller knows of the machine) or any
    probe of the attempts themselves. A loaded run cannot be corrected by its probes (a competing process
    slows small training ops far more than a matmul), only run again; the fastest attempt is then the one
    least touched by interference (`fastest`).
    """
    attempts = [first]
    while len(attempts) < tries:
        best = max([quiet, *(g for a in attempts for g in a["gflops"].values())])
        if not is_loaded(attempts[-1]["gflops"], best):
            break
        attempts.append(timed_attempt(fn, probe)[1])
    return attempts


def fastest(attempts: list[dict]) -> dict:
    """The attempt with the fewest seconds (interference only ever adds time)."""
    return min(attempts, key=lambda a: a["seconds"])


def epochs_time(epoch_seconds: list[float], epochs: int) -> float:
    """`epochs` × the median epoch's seconds: a training time that ignores a minority of epochs slowed by load."""
    return epochs * median(epoch_seconds)


def epochs_attempt(history: list[dict], epochs: int, quiet: float = 0.0) -> dict:
    """A training's own timing: `epochs_time` of its epochs whose probes show no load, at those epochs' median probes.

    `history` is `fit`'s, run with a probe (each epoch's "seconds" and "gflops"). If no epoch ran quiet,
    all of them count and their (loaded) probes say so, for `retime` to re-time throwaway epochs.
    """
    ref = max(quiet, quantile((g for h in history for g in h["gflops"].values()), QUIET_QUANTILE))
    calm = [h for h in history if not is_loaded(h["gflops"], ref)] or history
    return {"seconds": epochs_time([h["seconds"] for h in calm], epochs),
            "gflops": {k: median(h["gflops"][k] for h in calm) for k in ("before", "after")}}


def _channels_last(model: nn.Module, device: torch.device) -> bool:
    # channels_last pays on CUDA tensor cores. On CPU it depends on the widths: the narrow ResNets
    # (16-128 channels) train 1.2x faster with it and evaluate 1.1x faster (oneDNN reorders NCHW
    # inputs of narrow convs, channels_last needs none), while ResNet-18 at 32 px is no faster on
    # 1 or 2 threads, so only models that declare `cpu_channels_last` get it there (bench/cpu_layout.py).
    if device.type == "cuda":
        return is_convnet(model)
    return device.type == "cpu" and getattr(model, "cpu_channels_last", False)


def to_device(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move a model to `device`; convnets go channels_last on CUDA (narrow ones on CPU too), tiny-map convolutions dense on CPU."""
    device = torch.device(device)
    model = use_small_map_convs(model.to(device))
    if _channels_last(model, device):
        model = model.to(memory_format=torch.channels_last)
    return model


def _prep(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if _channels_last(model, x.device) else x


def sgd(params: Iterable | nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4
        ) -> torch.optim.SGD:
    """SGD over a module's parameters (or a parameter list)."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def forward(model: nn.Module, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits in fp32 for inputs `x` (autocast on CUDA); with `params`, those tensors replace the named parameters."""
    with autocast(x.device):
        x = _prep(x, model)
        out = model(x) if params is None else torch.func.functional_call(model, params, (x,))
        return out.float()


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, batches: Iterable[tuple[torch.Tensor, ...]],
                loss_fn: LossFn = F.cross_entropy, *, after_backward: Callable[[], None] | None = None,
                bar=None) -> dict[str, float]:
    """One pass: forward, `loss_fn(logits, y)`, backward, optional gradient edit, step. Returns means."""
    model.train()
    total_loss = torch.zeros((), device=next(model.parameters()).device)
    correct = torch.zeros_like(total_loss)
    n = 0
    for x, y, *_ in batches:
        logits = forward(model, x)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        opt.step()
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
        if bar is not None:
            bar.update(1)
    # one host sync per epoch, not per batch
    return {"loss": total_loss.item() / max(n, 1), "acc": correct.item() / max(n, 1)}


def inference_model(model: nn.Module) -> nn.Module:
    """`model` as predictions see it: an eval-mode copy with its BatchNorms folded into the convolutions (fold)."""
    with torch.inference_mode(False), torch.no_grad():  # a normal copy, usable outside inference mode
        return folded(model)


@torch.inference_mode()
def predict(model: nn.Module, data: DeviceData, split: Split, batch_size: int = 1024) -> torch.Tensor:
    """fp32 logits of `split` in eval mode, in the split's order (BatchNorms folded, see `inference_model`)."""
    model = inference_model(model)  # the model itself when it has nothing to fold
    was_training = model.training
    model.eval()
    out = [forward(model, x) for x, _ in data.batches(split, batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, data.num_classes, device=data.device)


def accuracy(model: nn.Module, data: DeviceData, split: Split, batch_size: int = 1024) -> float:
    """Top-1 accuracy on `split` (eval mode, no augmentation)."""
    logits = predict(model, data, split, batch_size)
    return (logits.argmax(1) == data.labels[data.indices(split)]).float().mean().item()


def per_sample_loss(model: nn.Module, data: DeviceData, split: Split, batch_size: int = 1024) -> torch.Tensor:
    """Cross-entropy of every sample of `split` (the population MIA feature)."""
    logits = predict(model, data, split, batch_size)
    return F.cross_entropy(logits, data.labels[data.indices(split)], reduction="none")


@dataclass
class Recipe:
    """Spec C: how the Original and Retrained models are trained."""

    epochs: int
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    if os.environ.get("DEEPUNLEARN_PROGRESS") == "text":
        # a batch render (papermill): a widget bar reaches neither the terminal nor the saved
        # notebook (which would show it at 0%); text on stderr reaches both, every 10 s at most
        from tqdm.std import tqdm

        return tqdm(total=total, desc=desc, leave=True, mininterval=10.0, file=sys.stderr)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=True, mininterval=1.0)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(model: nn.Module, data: DeviceData, split: Split, recipe: Recipe, *, seed: int = 123,
        ckpt_dir: Path | None = None, progress: bool = True, desc: str = "train",
        probe: Callable[[], float] | None = None) -> dict:
    """Train in place with SGD + per-epoch cosine (spec C); resume from `ckpt_dir` after a kill.

    Returns {"time": training seconds (checkpoint writes excluded), "history": per-epoch loss/acc/seconds}.
    With a speed `probe`, also the machine's speed before the first epoch and after each one, outside the
    timed region: every epoch's "gflops" {"before", "after"} and the whole call's "gflops".
    A resumed run ends with the same weights as an uninterrupted one: model, optimiser, scheduler
    and both RNG streams are checkpointed after every epoch.
    """
    device = data.device
    opt = sgd(model, recipe.lr, recipe.momentum, recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs, eta_min=0.0)
    gen = make_generator(device, seed)
    torch.manual_seed(seed)  # model-side randomness (TinyViT drop-path)
    start, elapsed, history = 0, 0.0, []
    ckpt = Path(ckpt_dir) / "checkpoint.pt" if ckpt_dir else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"].to(gen.get_state().device))
        set_global_rng_state((state["cpu_rng"], state["cuda_rng"] if device.type == "cuda" else None), device)
        start, elapsed, history = state["epoch"], state["elapsed"], state["history"]
    per_epoch = data.num_batches(split, recipe.batch_size)
    bar = _progress(per_epoch * recipe.epochs, desc, progress)
    if bar is not None:
        bar.update(per_epoch * start)
    first = last = probe() if probe else math.nan
    for epoch in range(start, recipe.epochs):
        with Timer(device) as t:
            batches = data.batches(split, recipe.batch_size, shuffle=True, augment=recipe.augment, generator=gen)
            stats = train_epoch(model, opt, batches, bar=bar)
            sched.step()
        elapsed += t.seconds
        history.append({"epoch": epoch + 1, **stats, "seconds": t.seconds})  # per epoch: see `epochs_attempt`
        if probe:
            history[-1]["gflops"] = {"before": last, "after": (last := probe())}
        if bar is not None:
            bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['acc']:.3f}", refresh=False)
        if ckpt is not None:
            cpu_rng, cuda_rng = global_rng_state(device)
            _save_checkpoint(ckpt, {
                "model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "gen": gen.get_state(), "cpu_rng": cpu_rng,
                "cuda_rng": torch.zeros(0) if cuda_rng is None else cuda_rng,
                "epoch": epoch + 1, "elapsed": elapsed, "history": history})
    if bar is not None:
        bar.close()
    if not all(math.isfinite(h["loss"]) for h in history):
        raise FloatingPointError(f"{desc}: training diverged (non-finite loss); lower the learning rate.")
    out = {"time": elapsed, "history": history, "recipe": asdict(recipe)}
    if probe:
        out["gflops"] = {"before": first, "after": last}
    return out


def timing_epoch(model: nn.Module, data: DeviceData, split: Split, recipe: Recipe, seed: int = 123) -> float:
    """Seconds of one more `fit` epoch on a throwaway copy of `model`: re-times a training that ran loaded."""
    model = copy.deepcopy(model)
    opt = sgd(model, recipe.lr, recipe.momentum, recipe.weight_decay)
    gen = make_generator(data.device, seed)
    # the caller's RNG streams are left as they were: timing must not change what comes after it
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []), Timer(data.device) as t:
        batches = data.batches(split, recipe.batch_size, shuffle=True, augment=recipe.augment, generator=gen)
        train_epoch(model, opt, batches)
    return t.seconds


def iterate_forever(make: Callable[[], Iterator]) -> Iterator:
    """Cycle over a batch iterator factory (a fresh shuffle each pass), as `itertools.cycle` cannot."""
    while True:
        yield from make()
