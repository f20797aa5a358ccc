"""The analysis says what its budget supports (quoting the study's τ curve) and how much the Original memorised."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from deepunlearn import results
from deepunlearn.stages import analyze


def table(trials: int) -> pd.DataFrame:
    rows = []
    for seed, (fa_o, fa_r, mia_o) in enumerate([(0.99, 0.85, 0.57), (0.97, 0.87, 0.56)]):
        rows += [{"dataset": "fashion_mnist", "arch": "smallresnet", "method": "original", "seed": seed, "fa": fa_o,
                  "test_mia": mia_o, "trials": 0},
                 {"dataset": "fashion_mnist", "arch": "smallresnet", "method": "retrain", "seed": seed, "fa": fa_r,
                  "test_mia": 0.49, "trials": 0},
                 {"dataset": "fashion_mnist", "arch": "smallresnet", "method": "ft", "seed": seed, "fa": 0.9,
                  "test_mia": 0.5, "trials": trials}]
    return pd.DataFrame(rows)


def analysis(tmp_path, trials: int, name: str = "demo") -> SimpleNamespace:
    return SimpleNamespace(table=table(trials), replicate=None, curve=None, notes=[],
                           cfg=SimpleNamespace(out=str(tmp_path), name=name))


def test_memorisation_is_the_forget_accuracy_gap_and_test_mia_over_seeds():
    text = analyze.memorisation_text(table(2))
    assert "minus the Retrained model's 12.0 points (seeds 10.0 to 14.0)" in text  # (14 + 10) / 2
    assert "Test MIA of the Original 0.565 (seeds 0.560 to 0.570), the Retrained model's 0.490; 2 seeds" in text


def test_without_a_study_the_line_says_stability_is_not_measured(tmp_path):
    line = analyze.budget_line(analysis(tmp_path, 2))
    assert line.startswith("This ranking rests on 2 trials per study and its stability is not measured: run `make study`")


def test_with_a_study_the_line_quotes_its_curve_at_this_budget(tmp_path):
    curve = pd.DataFrame({"dataset": "fashion_mnist", "arch": "smallresnet", "budget": range(1, 21),
                          "tau": [0.05 * k - 0.2 for k in range(1, 21)], "top3": 0.5, "methods": 18})
    results.save(curve, tmp_path / "reports" / "study", "stability")
    small = analyze.budget_line(analysis(tmp_path, 2))
    assert "2 trials per study, too small for a stable ranking" in small
    assert "search-score τ = -0.10" in small  # 0.05 x 2 - 0.2
    assert "τ ≥ 0.7 from 18 trials per study" in small  # 0.05 x 18 - 0.2 = 0.7, the study's own sentence
    enough = analyze.budget_line(analysis(tmp_path, 19))
    assert "a budget at which the study's search-score τ reached 0.7" in enough and "too small" not in enough
    beyond = analyze.budget_line(analysis(tmp_path, 50))
    assert "more than the 20 trials per study the study measured" in beyond
    assert "stability is not measured" in analyze.budget_line(analysis(tmp_path, 2, name="study"))
