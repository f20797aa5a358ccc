"""The HTML report is one self-contained file; the analysis figures render; results round-trip through CSV/parquet."""

from __future__ import annotations

import re

import pandas as pd
from test_ranking import PAIR_A, PAIR_B, make_table

from deepunlearn import plots, ranking, report, results


def test_figures_render_as_pdf_and_png(tmp_path):
    table = make_table({("ds1", "net"): PAIR_A, ("ds2", "net"): PAIR_B}, seeds=(0, 1, 2))
    r = ranking.rank(table, n_boot=100)
    for name, fig in {"gaps": plots.accuracy_gaps(table, r), "tradeoff": plots.tradeoff(r),
                      "cd": plots.critical_difference(r), "ranks": plots.rank_distribution(r)}.items():
        png = plots.save(fig, tmp_path, name)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
        assert (tmp_path / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


def test_report_is_one_self_contained_html_file(tmp_path):
    table = make_table({("ds1", "net"): PAIR_A})
    r = ranking.rank(table, n_boot=100)
    png = plots.save(plots.tradeoff(r), tmp_path / "figs", "tradeoff")
    main = ranking.main_table(r)
    path = report.write_report(tmp_path / "rep" / "index.html", "Deep Unlearn: test", "<p>intro</p>",
                               {"main": ("Main results", main)}, {"tradeoff": ("Trade-off", png)},
                               {"analyze": {"name": "test"}}, {"train: test": 12.5}, report.environment())
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]
    text = path.read_text()
    assert text.count('src="data:image/png;base64,') == 1
    assert not re.search(r"(src|href)=[\"'](?!data:)", text)  # nothing loaded from elsewhere
    assert "http://" not in text and "https://" not in text and "<script" not in text and "<link" not in text
    assert '<tr class="failed">' in text and "Main results" in text and "12.5" in text
    env = report.environment()
    assert {"python", "torch", "device", "git commit"} <= set(env)
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", env["git commit"])


def test_results_round_trip(tmp_path):
    table = make_table({("ds1", "net"): PAIR_A}).assign(hp='{"lr": 0.1}')
    paths = results.save(table, tmp_path)
    assert paths["csv"].is_file()
    back = results.load(tmp_path)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
