"""The analyze notebook renders the tiny config end to end through papermill: table, ranks, tables, figures, report."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from deepunlearn import config, scoring, trained
from deepunlearn.data import loader
from deepunlearn.render import render
from deepunlearn.stages import analyze

ROOT = Path(__file__).resolve().parents[1]


def contents(folder: Path) -> dict[str, str]:
    """sha256 of every table and PNG: the same files, byte for byte, but for the two things that are of their moment.

    A PDF embeds its creation time, and the protocol's machine line is the speed measured at that analysis.
    """
    out = {}
    for p in folder.iterdir():
        if p.suffix != ".pdf":
            lines = [line for line in p.read_bytes().splitlines() if b"machine of this analysis" not in line]
            out[p.name] = hashlib.sha256(b"\n".join(lines)).hexdigest()
    return out


@pytest.mark.slow
def test_analyze_notebook_on_tiny(tmp_path, monkeypatch):
    out, nb = tmp_path / "out", tmp_path / "nb"
    before = sorted((ROOT / "figures").rglob("*")) if (ROOT / "figures").exists() else []
    executed = render("analyze", "tiny", out_dir=nb / "analyze", log_output=False,
                      extra={"store": str(tmp_path / "store"), "out": str(out), "nb": str(nb)})
    cells = json.loads(executed.read_text())["cells"]
    assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    table = pd.read_parquet(out / "reports" / "tiny" / "results.parquet")
    assert set(table["method"]) == {"original", "retrain", "ft"} and "ulira_auc" in table.columns
    assert (out / "reports" / "tiny" / "results.csv").is_file()
    figs = out / "figures" / "tiny"
    for name in ("protocol", "main", "rte", "per-arch", "per-dataset-digits-tinycnn", "ulira-digits-tinycnn",
                 "glossary"):
        assert (figs / f"{name}.md").is_file() and (figs / f"{name}.tex").is_file()
    protocol = (figs / "protocol.md").read_text()
    assert "| seeds | 0 (1 seed) |" in protocol and "no search, default or hand-set hyperparameters: FT" in protocol
    assert "retain 1,147 · forget 128 · val 225 · test 297 images" in protocol and "tiny: 1" in protocol
    # U-LiRA from the tiny run: the attacked method between the two references, the numbers of results.parquet
    ulira = (figs / "ulira-digits-tinycnn.md").read_text()
    ft = table[table["method"] == "ft"].iloc[0]
    assert "| ORIGINAL |" in ulira.upper() and "| Retrain |" in ulira and f"| FT | {ft['ulira_auc']:.3f} |" in ulira
    # the notebook shows each of its four figures once
    pngs = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 4
    for name in ("gaps", "tradeoff", "critical-difference", "rank-distribution", "mia-losses-tiny", "ulira-roc-tiny"):
        assert (figs / f"{name}.png").stat().st_size > 5_000 and (figs / f"{name}.pdf").is_file()
    html = (out / "reports" / "tiny" / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "FT" in html and "analyze: collect" in html
    assert html.index("Protocol") < html.index("Summary") < html.index("Tables")
    # make figures: every table and figure again from the saved results alone. The store is deleted,
    # and anything that would train, unlearn, score or read the data fails the test.
    stamp = {p.name: p.stat().st_mtime_ns for p in figs.iterdir()}
    digest = contents(figs)
    shutil.rmtree(tmp_path / "store")

    def forbidden(*a, **k):
        raise AssertionError("the figures asked for more than the saved results")

    for module, name in ((trained, "fit"), (trained, "run_method"), (loader, "prepare_dataset"),
                         (scoring, "method_row"), (scoring, "resolve"), (config, "load")):
        monkeypatch.setattr(module, name, forbidden)
    again = analyze.run(config.make_config("analyze", name="tiny", attack=["tiny"], n_boot=200, progress=False,
                                           from_results=True, out=str(out), nb=str(nb), store=str(tmp_path / "store")))
    assert not (tmp_path / "store").exists()
    assert set(again.figures) == {"gaps", "tradeoff", "critical-difference", "rank-distribution", "mia-losses-tiny",
                                  "ulira-roc-tiny"}
    assert all(p.stat().st_mtime_ns > stamp[p.name] for p in figs.iterdir() if p.name in stamp)
    assert sorted(stamp) == sorted(p.name for p in figs.iterdir())
    assert contents(figs) == digest
    after = sorted((ROOT / "figures").rglob("*")) if (ROOT / "figures").exists() else []
    assert after == before  # only the paper config writes to figures/
