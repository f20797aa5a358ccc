"""Population membership inference on per-sample losses (spec E.2)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

from deepunlearn.errors import UserError

MIA_SEED = 123  # spec E.2: np.random seeded 123 and StratifiedShuffleSplit(random_state=123)
MIN_PER_SIDE = 5  # below this the 10% held-out fold cannot hold both classes


def _as_array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64).ravel()


def balance(members: np.ndarray, nonmembers: np.ndarray, seed: int = MIA_SEED
            ) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle both sides and truncate them to the smaller one's size (spec E.2's balancing)."""
    rng = np.random.default_rng(seed)
    members, nonmembers = rng.permutation(members), rng.permutation(nonmembers)
    n = min(len(members), len(nonmembers))
    return members[:n], nonmembers[:n]


def mia(member_losses: np.ndarray | torch.Tensor, nonmember_losses: np.ndarray | torch.Tensor, *,
        seed: int = MIA_SEED) -> float:
    """Mean held-out accuracy of a logistic regression telling members from non-members by their loss.

    Spec E.2: the per-sample cross-entropy is the only feature, both sides are balanced by random
    truncation, and the score is the mean accuracy over StratifiedShuffleSplit(10, test_size=0.1).
    0.5 means the two populations cannot be told apart.
    """
    m, o = balance(_as_array(member_losses), _as_array(nonmember_losses), seed)
    if len(m) < MIN_PER_SIDE:
        raise UserError(f"The MIA needs at least {MIN_PER_SIDE} samples on each side, got {len(m)}; "
                        f"use larger forget/val/test splits.")
    if not (np.isfinite(m).all() and np.isfinite(o).all()):
        raise FloatingPointError("Non-finite per-sample losses (a diverged model); the MIA is undefined.")
    x = np.concatenate([m, o])[:, None]
    y = np.concatenate([np.ones(len(m), np.int64), np.zeros(len(o), np.int64)])
    cv = StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())
