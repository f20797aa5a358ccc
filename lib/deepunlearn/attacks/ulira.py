"""U-LiRA (spec G, DESIGN §8): a per-sample likelihood-ratio attack telling unlearned from retrained models.

Shadow models (spec G.1–G.2, generalised to any dataset, architecture and size):
- the official-train indices are permuted with default_rng(123); the last 5% are the LiRA val set,
  the rest is the pool; split s permutes the pool with default_rng(s): first half = train half,
  second half = held-out; forget set f permutes the train half with default_rng(f): last 10% forget.
- per (s, f): an Original (train half) and a Retrained model (retain only), stored once through
  `trained.get_reference` and shared by every method; per method, an unlearned shadow made from
  that Original. Only each model's per-sample statistic on the pool is kept for unlearned shadows.

Attack (Carlini et al. 2022's statistic, Hayes et al. 2024's unlearning setting): for each pool sample x,
"in" = the target's models in which x was forgotten, "out" = Retrained models that never saw x (x in
the held-out half). Gaussians are fitted per sample; the models of a shadow split are scored with
Gaussians fitted on the other splits only, so a target never enters its own fit. The membership
score is φ_in / (φ_in + φ_out). Positives are the in-observations, negatives the
out-observations. With the Original (or the Retrained model) as the target, the same procedure gives
the two reference curves a method is read between.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.errors import UserError
from deepunlearn.methods import get_method, run_method
from deepunlearn.store import Store, read_json, write_json
from deepunlearn.trained import data_key, get_reference, reference_params
from deepunlearn.training import Recipe, predict

SPLIT_SEED = 123  # spec G.1: the official-train permutation
VAL_FRACTION = 0.05  # spec G.1: the last 5% form the LiRA val set
FORGET_FRACTION = 0.1  # spec G.1: the last 10% of each train half are forgotten
STATISTICS = ("logit", "correct")  # DESIGN §8 default; the reference code's 0/1 correctness variant
REFERENCES = ("original", "retrain")
STAT_CLIP = 100.0  # bound of the logit-scaled confidence
VERSION = 1  # bump when the stored statistics or the attack change meaning


# --- splits -----------------------------------------------------------------------------------------

@dataclass
class LiraSplits:
    """Spec G.1 index sets (dataset indices): LiRA val, pool, and per split / forget set the shadows' data."""

    val: np.ndarray
    pool: np.ndarray  # sorted: statistics are stored in this order
    train: list[np.ndarray]  # [s] train half
    held: list[np.ndarray]  # [s] held-out half
    forget: list[list[np.ndarray]]  # [s][f]
    retain: list[list[np.ndarray]]  # [s][f]

    @property
    def n_splits(self) -> int:
        return len(self.train)

    @property
    def n_forget(self) -> int:
        return len(self.forget[0])

    def pairs(self) -> list[tuple[int, int]]:
        """Every (split, forget set) in order."""
        return [(s, f) for s in range(self.n_splits) for f in range(self.n_forget)]

    def positions(self, idx: np.ndarray) -> np.ndarray:
        """Positions of dataset indices in the sorted pool."""
        return np.searchsorted(self.pool, idx)

    def checksum(self) -> str:
        """sha256 of the pool, the val set and every split's index sets."""
        h = hashlib.sha256()
        for a in [self.val, self.pool, *self.train, *self.held, *[x for fs in self.forget for x in fs]]:
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()


def make_lira_splits(dev: np.ndarray, n_splits: int, n_forget: int, *, val_fraction: float = VAL_FRACTION,
                     forget_fraction: float = FORGET_FRACTION) -> LiraSplits:
    """Spec G.1 on the official-train indices `dev` (sorted first, so the result depends only on the set)."""
    if n_splits < 2 or n_forget < 1:
        raise UserError(f"U-LiRA needs at least 2 shadow splits and 1 forget set, not "
                        f"{n_splits} x {n_forget}; raise them.")
    perm = np.random.default_rng(SPLIT_SEED).permutation(np.sort(np.asarray(dev, np.int64)))
    n_val = int(val_fraction * len(perm))
    val, pool = perm[len(perm) - n_val:], perm[:len(perm) - n_val]
    half = len(pool) // 2
    train, held, forget, retain = [], [], [], []
    for s in range(n_splits):
        p = np.random.default_rng(s).permutation(pool)
        train.append(p[:half])
        held.append(p[half:])
        n_f = int(forget_fraction * half)
        fs, rs = [], []
        for f in range(n_forget):
            q = np.random.default_rng(f).permutation(p[:half])
            fs.append(q[half - n_f:])
            rs.append(q[:half - n_f])
        forget.append(fs)
        retain.append(rs)
    if min(len(x) for x in forget[0]) < 1:
        raise UserError(f"The U-LiRA pool ({len(pool)} samples) is too small for a forget set; "
                        f"use more data.")
    return LiraSplits(val, np.sort(pool), train, held, forget, retain)


def shadow_recipe(recipe: Recipe, epochs: int | None) -> Recipe:
    """The shadows' recipe: the experiment's, with `epochs` if given (the paper: 91 on CIFAR-10)."""
    return dataclasses.replace(recipe, epochs=epochs) if epochs else recipe


def official_train(data: DeviceData) -> np.ndarray:
    """The official-train indices `data` uses (retain ∪ forget ∪ val of spec A.3; a subset's sample)."""
    return np.sort(data.indices(["retain", "forget", "val"]).cpu().numpy())


# --- the statistic ------------------------------------------------------------------------------------

def logit_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log(p_y / (1 − p_y)) computed stably as logit_y − logsumexp(other logits) (Carlini et al. 2022)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - torch.logsumexp(others, dim=1)


def model_statistics(model: nn.Module, data: DeviceData, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Both statistics (logit-scaled confidence, 0/1 correctness) of `model` on dataset indices `idx`.

    The confidence is clipped to ±100 (float32 probabilities saturate far before) and a diverged
    model's NaN counts as no confidence at all, so one bad shadow cannot poison every fit.
    """
    idx_t = torch.as_tensor(idx, dtype=torch.int64, device=data.device)
    logits = predict(model, data, idx_t)
    y = data.labels[idx_t]
    conf = logit_confidence(logits, y).nan_to_num(nan=-STAT_CLIP).clamp(-STAT_CLIP, STAT_CLIP)
    return {"logit": conf.cpu().numpy().astype(np.float32),
            "correct": (logits.argmax(1) == y).cpu().numpy().astype(np.float32)}


def hp_fields(method: str, hp: Any) -> dict:
    """The checked hyperparameters of `method` as a dict (store keys); `hp` is its dataclass, a dict or None."""
    spec = get_method(method)
    return asdict(spec.check_hp(hp) if is_dataclass(hp) else spec.make_hp(**(hp or {})))


# --- shadow models ------------------------------------------------------------------------------------

@dataclass
class Shadows:
    """The shadow models of one U-LiRA setting; each model and its statistics are built once in the store."""

    store: Store
    data: DeviceData
    splits: LiraSplits
    arch: str
    seed: int  # model initialisation seed, the same for every shadow (spec G: model_seed 0)
    recipe: Recipe
    share_original: bool = True  # one Original per split (it sees the same train half for every f)
    progress: bool = False
    built: list[str] = field(default_factory=list)  # labels of the artifacts built by this object (tests)

    def shadow_data(self, s: int, f: int) -> DeviceData:
        """The data of shadow (s, f): retain / forget, val = LiRA val, test = the held-out half."""
        sp = self.splits
        return self.data.with_splits(retain=sp.retain[s][f], forget=sp.forget[s][f], val=sp.val,
                                     test=sp.held[s])

    def original_pair(self, s: int, f: int) -> tuple[int, int]:
        """Which (s, f)'s Original serves shadow (s, f)."""
        return (s, 0) if self.share_original else (s, f)

    def _pool_key(self) -> dict:
        # a model's statistics depend on the model and the pool only, so more splits reuse the first ones
        return {"pool": hashlib.sha256(self.splits.pool.tobytes()).hexdigest(), "version": VERSION}

    def reference(self, role: str, s: int, f: int) -> nn.Module:
        """The stored Original or Retrained shadow model of (s, f) (trained on first use)."""
        if role == "original":
            s, f = self.original_pair(s, f)
        return get_reference(self.store, self.shadow_data(s, f), self.arch, self.seed, role, self.recipe,
                             progress=self.progress, desc=f"U-LiRA shadow {role} split {s} forget set {f}",
                             retime_load=False)[0]  # no RTE reads a shadow's time

    def reference_stats(self, role: str, s: int, f: int) -> dict[str, np.ndarray]:
        """Pool statistics of the Original or Retrained shadow of (s, f)."""
        if role == "original":
            s, f = self.original_pair(s, f)
        sdata = self.shadow_data(s, f)
        params = {"model": reference_params(sdata, self.arch, self.seed, role, self.recipe),
                  **self._pool_key()}
        label = f"{self.data.info.name}-{self.arch}-{role}-s{s}f{f}"

        def build(work: Path) -> None:
            self.built.append(label)
            stats = model_statistics(self.reference(role, s, f), sdata, self.splits.pool)
            np.savez(work / "stats.npz", **stats)

        return dict(np.load(self.store.get_or_compute("lira-stats", params, build, label) / "stats.npz"))

    def unlearned_stats(self, method: str, hp: Any, s: int, f: int) -> tuple[dict[str, np.ndarray], dict]:
        """Pool statistics and meta (time) of `method` (hyperparameter dataclass or dict) on the Original shadow of (s, f)."""
        params_hp = hp_fields(method, hp)
        sdata = self.shadow_data(s, f)
        so, fo = self.original_pair(s, f)
        o_params = reference_params(self.shadow_data(so, fo), self.arch, self.seed, "original", self.recipe)
        params = {"original": o_params,
                  "data": data_key(sdata), "method": method, "hp": params_hp, **self._pool_key()}
        label = f"{self.data.info.name}-{self.arch}-{method}-s{s}f{f}"

        def build(work: Path) -> None:
            self.built.append(label)
            model, seconds = run_method(method, self.reference("original", s, f), sdata, params_hp)
            np.savez(work / "stats.npz", **model_statistics(model, sdata, self.splits.pool))
            write_json(work / "meta.json", {"time": seconds})

        path = self.store.get_or_compute("lira-unlearned", params, build, label)
        return dict(np.load(path / "stats.npz")), read_json(path / "meta.json")

    def target_stats(self, target: str, hp: Any, s: int, f: int) -> dict[str, np.ndarray]:
        """Statistics of the target model of (s, f): a reference role or an unlearning method."""
        if target in REFERENCES:
            return self.reference_stats(target, s, f)
        return self.unlearned_stats(target, hp, s, f)[0]


# --- observations and per-sample Gaussians --------------------------------------------------------------

@dataclass
class Observations:
    """One value per (model, sample): in = target models that forgot x, out = retrained, never saw x."""

    in_x: np.ndarray  # pool positions
    in_v: np.ndarray
    in_split: np.ndarray  # shadow split s of the model
    out_x: np.ndarray
    out_v: np.ndarray
    out_split: np.ndarray


def collect(shadows: Shadows, target: str, hp: Any = None, statistic: str = "logit") -> Observations:
    """Gather the in- and out-observations of `target` over every shadow (s, f)."""
    if statistic not in STATISTICS:
        raise UserError(f"Unknown U-LiRA statistic {statistic!r}; choose one of {', '.join(STATISTICS)}.")
    sp = shadows.splits
    ins, outs = [], []
    seen = np.zeros(len(sp.pool), dtype=bool)
    for s, f in sp.pairs():
        fx = sp.positions(sp.forget[s][f])
        if target == "original" and shadows.share_original:
            # the same Original serves every f of split s: count each (model, sample) once
            if f == 0:
                seen[:] = False
            fx = fx[~seen[fx]]
            seen[fx] = True
        tv = shadows.target_stats(target, hp, s, f)[statistic]
        ins.append((fx, tv[fx], np.full(len(fx), s)))
        hx = sp.positions(sp.held[s])
        rv = shadows.reference_stats("retrain", s, f)[statistic]
        outs.append((hx, rv[hx], np.full(len(hx), s)))
    (ix, iv, ig), (ox, ov, og) = ([np.concatenate(col) for col in zip(*parts)] for parts in (ins, outs))
    return Observations(ix, iv.astype(np.float64), ig, ox, ov.astype(np.float64), og)


Sums = tuple[np.ndarray, np.ndarray, np.ndarray]  # per-sample count, Σv, Σv²


def _sums(x: np.ndarray, v: np.ndarray, n: int) -> Sums:
    return (np.bincount(x, minlength=n).astype(np.float64), np.bincount(x, v, minlength=n),
            np.bincount(x, v * v, minlength=n))


def _pooled_var(c: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> float:
    """Within-sample variance pooled over samples with at least 2 values (else the variance of all values)."""
    ok = c >= 2
    if ok.any():
        return float((s2[ok] - s1[ok] ** 2 / c[ok]).sum() / c[ok].sum())
    n, t1, t2 = c.sum(), s1.sum(), s2.sum()
    return float(t2 / n - (t1 / n) ** 2) if n > 1 else 1.0


def _log_normal(v: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((v - mu) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)


@dataclass
class _Fit:
    """Per-sample in/out Gaussians fitted on some observations (see `fit_and_score`)."""

    mu_in: np.ndarray
    sd_in: np.ndarray
    mu_out: np.ndarray
    sd_out: np.ndarray

    def llr(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        return _log_normal(v, self.mu_in[x], self.sd_in[x]) - _log_normal(v, self.mu_out[x], self.sd_out[x])


def _fit(ins: Sums, outs: Sums, min_obs: int, min_std: float) -> _Fit:
    ci, s1i, s2i = ins
    co, s1o, s2o = outs
    if co.sum() == 0:
        raise UserError("U-LiRA has no out-observations to fit; use more shadow splits.")
    mu_out = np.where(co >= 1, s1o / np.maximum(co, 1), s1o.sum() / co.sum())
    # samples with too few in-values: their out-mean plus the mean in−out shift of the others
    both = (ci >= 1) & (co >= 1)
    shift = float((s1i[both] - ci[both] * mu_out[both]).sum() / ci[both].sum()) if both.any() else 0.0
    mu_in = np.where(ci >= 1, s1i / np.maximum(ci, 1), mu_out + shift)

    def sd(c, s1, s2, mu):
        var = np.where(c >= min_obs, s2 / np.maximum(c, 1) - mu ** 2, _pooled_var(c, s1, s2))
        return np.maximum(np.sqrt(np.maximum(var, 0.0)), min_std)

    return _Fit(mu_in, sd(ci, s1i, s2i, mu_in), mu_out, sd(co, s1o, s2o, mu_out))


def fit_and_score(in_x: np.ndarray, in_v: np.ndarray, in_group: np.ndarray, out_x: np.ndarray,
                  out_v: np.ndarray, out_group: np.ndarray, n_samples: int, *, min_obs: int = 8,
                  min_std: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood ratios log φ_in(v) − log φ_out(v) of every in- and out-observation.

    Per sample x, Gaussians are fitted to its in- and out-values. Observations of one group (a shadow
    split s: its Original, Retrained and unlearned models) are scored with Gaussians fitted on the
    other groups only, so a target never enters its own fit and a positive and a negative of the same
    sample are scored by identically distributed fits (leaving out single observations would fit a
    positive on one in-value fewer than a negative, which biases the AUC when shadows are few).
    Fallbacks for few shadows: with fewer than `min_obs` values a sample uses the pooled within-sample
    variance (Carlini et al.'s global variance); with no in-value, its in-mean is its out-mean plus
    the average in−out shift of the other samples; with no out-value, the global out-mean. Standard
    deviations are floored at `min_std` (a sample always right under the 0/1 statistic has σ = 0).
    """
    if min_obs < 2:
        raise UserError(f"min_obs={min_obs}: a per-sample variance needs at least 2 observations.")
    groups = np.union1d(in_group, out_group)
    if len(groups) < 2:
        raise UserError("U-LiRA needs observations from at least 2 shadow splits; use more splits.")
    tot_in, tot_out = _sums(in_x, in_v, n_samples), _sums(out_x, out_v, n_samples)
    llr_in, llr_out = np.empty(len(in_x)), np.empty(len(out_x))
    for g in groups:
        mi, mo = in_group == g, out_group == g
        g_in, g_out = _sums(in_x[mi], in_v[mi], n_samples), _sums(out_x[mo], out_v[mo], n_samples)
        fit = _fit(tuple(t - u for t, u in zip(tot_in, g_in)), tuple(t - u for t, u in zip(tot_out, g_out)),
                   min_obs, min_std)
        llr_in[mi] = fit.llr(in_x[mi], in_v[mi])
        llr_out[mo] = fit.llr(out_x[mo], out_v[mo])
    return llr_in, llr_out


def membership_score(llr: np.ndarray) -> np.ndarray:
    """φ_in / (φ_in + φ_out) from the log-likelihood ratio (a logistic function, overflow-safe)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(llr, np.float64)))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Highest TPR whose FPR does not exceed `target` (Carlini et al.'s low-FPR reading)."""
    return float(tpr[np.searchsorted(fpr, target, side="right") - 1])


def summarize(llr_pos: np.ndarray, llr_neg: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """AUC, TPR at 1% / 0.1% FPR, balanced accuracy at score 0.5, mean membership score; and the ROC curve."""
    y = np.concatenate([np.ones(len(llr_pos)), np.zeros(len(llr_neg))])
    s = np.concatenate([llr_pos, llr_neg])
    fpr, tpr, _ = roc_curve(y, s)
    tp, tn = float((llr_pos > 0).mean()), float((llr_neg <= 0).mean())
    summary = {"auc": float(roc_auc_score(y, s)), "tpr_at_1pct_fpr": tpr_at_fpr(fpr, tpr, 0.01),
               "tpr_at_01pct_fpr": tpr_at_fpr(fpr, tpr, 0.001), "balanced_acc": 0.5 * (tp + tn),
               "mean_score": float(membership_score(llr_pos).mean()),
               "mean_score_neg": float(membership_score(llr_neg).mean()),
               "n_pos": len(llr_pos), "n_neg": len(llr_neg)}
    return summary, fpr, tpr


# --- the attack ---------------------------------------------------------------------------------------------

@dataclass
class UliraResult:
    """U-LiRA on one target: summary numbers, ROC curve and per-sample mean membership scores."""

    target: str
    summary: dict
    fpr: np.ndarray
    tpr: np.ndarray
    per_sample: dict[str, np.ndarray]  # index (dataset), n_forgotten, mean_score over its forgotten ones
    path: Path | None = None  # store folder; forgotten.npz there holds every forgotten observation's score


def attack_key(shadows: Shadows, target: str, hp: Any = None, statistic: str = "logit", min_obs: int = 8,
               min_std: float = 1e-2) -> dict:
    """Store key of one U-LiRA attack: the shadow setting, the target and its hyperparameters, the statistic."""
    spec_hp = {} if target in REFERENCES else hp_fields(target, hp)
    sp = shadows.splits
    return {"shadows": {"dataset": shadows.data.info.name, "arch": shadows.arch, "seed": shadows.seed,
                        "recipe": asdict(shadows.recipe), "share_original": shadows.share_original,
                        "device": shadows.data.device.type, "splits": sp.checksum(), **shadows._pool_key()},
            "target": target, "hp": spec_hp, "statistic": statistic, "min_obs": min_obs, "min_std": min_std}


def attack(shadows: Shadows, target: str, hp: Any = None, *, statistic: str = "logit",
           min_obs: int = 8, min_std: float = 1e-2) -> UliraResult:
    """U-LiRA of `target` (a method id, "original" or "retrain"), cached in the store."""
    spec_hp = {} if target in REFERENCES else hp_fields(target, hp)
    sp = shadows.splits
    params = attack_key(shadows, target, hp, statistic, min_obs, min_std)

    def build(work: Path) -> None:
        obs = collect(shadows, target, spec_hp, statistic)
        lp, ln = fit_and_score(obs.in_x, obs.in_v, obs.in_split, obs.out_x, obs.out_v, obs.out_split,
                               len(sp.pool), min_obs=min_obs, min_std=min_std)
        summary, fpr, tpr = summarize(lp, ln)
        n = np.bincount(obs.in_x, minlength=len(sp.pool))
        score = np.bincount(obs.in_x, membership_score(lp), minlength=len(sp.pool))
        summary.update(n_splits=sp.n_splits, n_forget=sp.n_forget,
                       in_per_sample=float(len(obs.in_x) / len(sp.pool)),
                       out_per_sample=float(len(obs.out_x) / len(sp.pool)))
        write_json(work / "summary.json", summary)
        # a compact ROC: keep at most ~4000 points, always the low-FPR end
        keep = np.unique(np.concatenate([np.nonzero(fpr <= 0.01)[0][:2000],
                                         np.linspace(0, len(fpr) - 1, 2000).astype(int)]))
        np.savez(work / "roc.npz", fpr=fpr[keep], tpr=tpr[keep])
        np.savez(work / "per_sample.npz", index=sp.pool, n_forgotten=n,
                 mean_score=np.divide(score, n, out=np.full(len(n), np.nan), where=n > 0))
        # every forgotten observation's score, as the reference's per-sample lists (spec G.3)
        np.savez(work / "forgotten.npz", index=sp.pool[obs.in_x], split=obs.in_split.astype(np.int32),
                 score=membership_score(lp).astype(np.float32), llr=lp.astype(np.float32))

    label = f"{shadows.data.info.name}-{shadows.arch}-{target}"
    path = shadows.store.get_or_compute("ulira", params, build, label)
    roc = np.load(path / "roc.npz")
    return UliraResult(target, read_json(path / "summary.json"), roc["fpr"], roc["tpr"],
                       dict(np.load(path / "per_sample.npz")), path)


def ulira(store: Store, data: DeviceData, *, arch: str, recipe: Recipe, n_splits: int, n_forget: int,
          methods: dict[str, dict] | list[str], seed: int = 0, statistic: str = "logit",
          share_original: bool = True, progress: bool = False) -> dict[str, UliraResult]:
    """U-LiRA of the Original, the Retrained model and every method, on shadows of `data`'s train set."""
    methods = {m: {} for m in methods} if isinstance(methods, list) else dict(methods)
    splits = make_lira_splits(official_train(data), n_splits, n_forget)
    shadows = Shadows(store, data, splits, arch, seed, recipe, share_original, progress)
    return {t: attack(shadows, t, methods.get(t), statistic=statistic) for t in [*REFERENCES, *methods]}


def results_table(results: dict[str, UliraResult]):
    """One row per target with its summary numbers."""
    import pandas as pd

    order = ["auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "balanced_acc", "mean_score", "mean_score_neg",
             "n_pos", "n_neg", "in_per_sample", "out_per_sample"]
    return pd.DataFrame([{"target": t, **{k: r.summary[k] for k in order}} for t, r in results.items()])
