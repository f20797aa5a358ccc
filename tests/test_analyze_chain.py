"""The analyze notebook renders the tiny config end to end through papermill: table, ranks, tables, figures, report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import deepunlearn.stages.analyze  # noqa: F401  (registers the analyze config)
from deepunlearn.render import render

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_analyze_notebook_on_tiny(tmp_path):
    out, nb = tmp_path / "out", tmp_path / "nb"
    before = sorted((ROOT / "figures").rglob("*")) if (ROOT / "figures").exists() else []
    executed = render("analyze", "tiny", root=ROOT, out_dir=nb / "analyze", log_output=False,
                      extra={"store": str(tmp_path / "store"), "out": str(out), "nb": str(nb)})
    cells = json.loads(executed.read_text())["cells"]
    assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    table = pd.read_parquet(out / "reports" / "tiny" / "results.parquet")
    assert set(table["method"]) == {"original", "retrain", "ft"} and "ulira_auc" in table.columns
    assert (out / "reports" / "tiny" / "results.csv").is_file()
    figs = out / "figures" / "tiny"
    for name in ("main", "rte", "per-arch", "per-dataset-digits-tinycnn"):
        assert (figs / f"{name}.md").is_file() and (figs / f"{name}.tex").is_file()
    for name in ("gaps", "tradeoff", "critical-difference", "rank-distribution", "mia-losses-tiny", "ulira-roc-tiny"):
        assert (figs / f"{name}.png").stat().st_size > 5_000 and (figs / f"{name}.pdf").is_file()
    html = (out / "reports" / "tiny" / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "FT" in html and "analyze: collect" in html
    after = sorted((ROOT / "figures").rglob("*")) if (ROOT / "figures").exists() else []
    assert after == before  # only the paper config writes to figures/
