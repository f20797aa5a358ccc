"""Tables as Markdown and LaTeX files, and one self-contained HTML report (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

# ---------------------------------------------------------------- Markdown and LaTeX tables


def _groups(df: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """Split on the `group` column (reference / ranked / failed) when there is one."""
    if "group" not in df.columns:
        return [(None, df)]
    return [(g, part.drop(columns="group")) for g, part in df.groupby("group", sort=False)]


def to_markdown(df: pd.DataFrame) -> str:
    """A pipe table per group (the failed group under its own heading)."""
    out = []
    for group, part in _groups(df):
        if group is not None:
            out.append(f"**{group}**\n")
        cols = [str(c) for c in part.columns]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "|".join("---" for _ in cols) + "|")
        out += ["| " + " | ".join(str(v) for v in row) + " |" for row in part.itertuples(index=False)]
        out.append("")
    return "\n".join(out)


def _tex(s) -> str:
    s = str(s)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("–", "--"), ("−", "$-$"), ("+", "$+$"),
                 ("≤", r"$\le$"), ("≥", r"$\ge$"), ("×", r"$\times$"), ("·", r"$\cdot$"), ("≈", r"$\approx$"),
                 ("α", r"$\alpha$"), ("→", r"$\to$"), ("τ", r"$\tau$"), ("χ²", r"$\chi^2$"), ("|", r"$|$")):
        s = s.replace(a, b)
    return s


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs table; groups are separated by a rule and a label row."""
    parts = _groups(df)
    cols = [c for c in df.columns if c != "group"]
    lines = [r"\begin{table}[t]", r"\centering", r"\scriptsize", r"\begin{tabular}{l" + "r" * (len(cols) - 1) + "}",
             r"\toprule", " & ".join(_tex(c) for c in cols) + r" \\", r"\midrule"]
    for i, (group, part) in enumerate(parts):
        if i:
            lines.append(r"\midrule")
        if group is not None:
            lines.append(rf"\multicolumn{{{len(cols)}}}{{l}}{{\textit{{{_tex(group)}}}}} \\")
        lines += [" & ".join(_tex(v) for v in row) + r" \\" for row in part.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{_tex(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, folder: Path, name: str, caption: str = "") -> dict[str, Path]:
    """Write <folder>/<name>.md and <folder>/<name>.tex."""
    folder.mkdir(parents=True, exist_ok=True)
    md, tex = folder / f"{name}.md", folder / f"{name}.tex"
    md.write_text((f"{caption}\n\n" if caption else "") + to_markdown(df))
    tex.write_text(to_latex(df, caption, f"tab:{name}"))
    return {"md": md, "tex": tex}


# ---------------------------------------------------------------- environment


def git_commit(root: Path = Path(".")) -> str:
    """HEAD's commit, with '+dirty' when the working tree has changes; 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True,
                               check=False).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


HERE = Path(__file__).resolve().parent  # git asks from the code's own folder, wherever the process runs


def code_version(root: Path = HERE) -> str:
    """`git describe --always --dirty --tags` of the code (a tag, or a short commit), 'unknown' outside git."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(root: Path = HERE) -> dict[str, str]:
    """Versions, machine and device of this analysis, with its fp32 matmul speed measured now."""
    import numpy
    import torch

    from deepunlearn.training import matmul_gflops

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})"
    return {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pd.__version__, "platform": platform.platform(), "device": device,
            "cpu threads": str(torch.get_num_threads()),
            "fp32 matmul GFLOP/s": f"{matmul_gflops('cuda' if cuda else 'cpu', 0.2):.1f}",
            "code version": code_version(root), "git commit": git_commit(root),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S")}


# ---------------------------------------------------------------- the HTML report

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
td.text{text-align:left}tr.failed td{color:#a33}tr.reference td{background:#f7f7ff}img{max-width:100%}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}h2{border-bottom:1px solid #ddd}"""


def _td(value) -> str:
    text = str(value)
    # prose (a protocol line, a failure reason) reads left-aligned; numbers and intervals stay right-aligned
    prose = re.search(r"[A-Za-z]{2}", text) is not None and (" " in text or not re.search(r"\d", text))
    return f"<td class='text'>{html.escape(text)}</td>" if prose else f"<td>{html.escape(text)}</td>"


def table_html(df: pd.DataFrame) -> str:
    """An HTML table; rows of the failed group and the references get their own class."""
    cols = [c for c in df.columns if c != "group"]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for _, row in df.iterrows():
        cls = f' class="{html.escape(str(row["group"]))}"' if "group" in df.columns else ""
        body.append(f"<tr{cls}>" + "".join(_td(row[c]) for c in cols) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image_html(png: Path, alt: str) -> str:
    """The PNG inlined as a data URI, so the report is one file."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def write_report(path: Path, title: str, intro: str, tables: dict[str, tuple[str, pd.DataFrame]],
                 figures: dict[str, tuple[str, Path]], config: dict, timings: dict[str, float],
                 env: dict[str, str]) -> Path:
    """One self-contained HTML file: intro, tables, figures, stage timings, configuration and environment."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>", intro]
    parts.append("<h2>Tables</h2>")
    for caption, df in tables.values():
        parts += [f"<h3>{html.escape(caption)}</h3>", table_html(df)]
    parts.append("<h2>Figures</h2>")
    parts += [image_html(png, caption) for caption, png in figures.values() if png and Path(png).is_file()]
    parts.append("<h2>Time per stage</h2>")
    if timings:
        rows = pd.DataFrame({"stage": list(timings), "seconds": [f"{s:.1f}" for s in timings.values()]})
        parts.append(table_html(rows))
    else:
        parts.append("<p>No stage timings were found.</p>")
    parts += ["<h2>Configuration</h2>", f"<pre>{html.escape(json.dumps(config, indent=2, default=str))}</pre>",
              "<h2>Environment</h2>", table_html(pd.DataFrame({"": list(env), "value": list(env.values())})),
              "</body></html>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.html")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path
