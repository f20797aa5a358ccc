"""The HTML report is one self-contained file; the analysis figures render; results round-trip through CSV/parquet."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from test_ranking import PAIR_A, PAIR_B, make_table

from deepunlearn import plots, ranking, report, results
from deepunlearn.config import make_config
from deepunlearn.stages import analyze


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


def test_protocol_lists_the_seeds_trials_and_what_the_intervals_are():
    table = make_table({("ds1", "net"): PAIR_A}, seeds=(3, 7)).assign(
        train_config="t1", epochs=8, n_retain=900, n_forget=100, n_val=200, n_test=300)
    searched = table["method"].isin(["a", "b", "c"])
    table["trials"] = np.where(searched, 2, 0)
    table["search_seeds"] = np.where(searched, "3", "")
    r = ranking.rank(table, n_boot=100)
    env = {"device": "CPU (x86_64)", "cpu threads": "2", "fp32 matmul GFLOP/s": "41.5", "code version": "v1-3-gabc",
           "git commit": "abc"}
    a = analyze.Analysis(make_config("analyze"), [], table, r, env=env)
    p = dict(analyze.protocol(a).itertuples(index=False, name=None))
    assert p["seeds"] == "3, 7 (2 seeds)" and p["datasets"] == "ds1" and p["architectures"] == "net"
    assert p["hyperparameter search"] == ("2 trials per study × 1 study (seed 3): A, B, C; "
                                          "no search, default or hand-set hyperparameters: D, E, F")
    assert p["data per seed"] == "ds1: retain 900 · forget 100 · val 200 · test 300 images"
    assert p["machine of this analysis"] == "CPU (x86_64), 2 threads, fp32 matmul 41.5 GFLOP/s (measured now)"
    assert p["code version"] == "v1-3-gabc (commit abc)"
    assert "range over 2 seeds" in p["intervals"] and "95%" not in p["intervals"]
    assert p["significance"] == ranking.cd_sentence(r) and "not measured" in p["ranking stability"]


def test_speed_flags_name_the_rtes_timed_at_speeds_far_apart():
    table = make_table({("ds1", "net"): PAIR_A})
    table["speed_gap"] = 0.05
    table.loc[(table["method"] == "b") & (table["seed"] == 1), "speed_gap"] = 0.35
    text = ranking.speed_flags(table)
    # 6 methods x 2 seeds with an RTE; the references are not counted
    assert text == "1 of the 12 RTEs with speed measurements were timed at machine speeds more than 20% apart: B (seed 1, 35%)."
    r = ranking.rank(table, n_boot=100)
    rte = ranking.rte_table(r).set_index("method")
    assert rte.loc["B", "ds1/net speed gap"] == "35% ⚑" and rte.loc["A", "ds1/net speed gap"] == "5%"
    assert ranking.speed_flags(table.assign(speed_gap=np.nan)).startswith("None of the 12 RTEs has a speed measurement")
    table.loc[table["method"] == "a", "speed_gap"] = np.nan
    assert ranking.speed_flags(table).endswith("2 RTEs have no speed measurement (older stored runs) and are raw ratios.")


def test_speed_flags_count_the_runs_re_timed_under_load_and_the_table_keeps_the_wall_ratio():
    table = make_table({("ds1", "net"): PAIR_A})
    table["speed_gap"], table["unlearn_tries"], table["retrain_tries"] = 0.05, 1, 1
    table["rte_wall"] = table["rte"] / 2
    table.loc[(table["method"] == "b") & (table["seed"] == 1), "unlearn_tries"] = 3
    table.loc[(table["method"] == "c") & (table["seed"] == 1), "unlearn_tries"] = 2
    table.loc[table["seed"] == 0, "retrain_tries"] = 2  # one Retrained training, on every row of its seed
    assert ranking.speed_flags(table).endswith(
        "Run again because their speed probes showed a loaded machine (the fastest time kept): "
        "2 unlearning runs and 1 Retrained training.")
    table["unlearn_tries"], table["retrain_tries"] = 1, 1
    assert "Run again" not in ranking.speed_flags(table)
    rte = ranking.rte_table(ranking.rank(table, n_boot=100)).set_index("method")
    assert "ds1/net wall RTE" in rte.columns and "ds1/net RTE at speed" not in rte.columns
