"""Render a stage notebook: notebooks/<stage>.py + params/<stage>/<config>.yaml → outputs/nb/<stage>/<config>.ipynb.

The executed notebook is written to `<config>.partial.ipynb` and renamed only on success, so a
failed run never leaves something that looks finished; a failed one is kept as
`<config>.failed.ipynb` for its details. A `UserError` raised inside the notebook reaches the
terminal as its one sentence (exit status 2); any other error is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

from deepunlearn.errors import UserError


def render(stage: str, config: str, root: Path = Path("."), out_dir: Path | None = None,
           extra: dict | None = None, log_output: bool = True) -> Path:
    """Execute one stage notebook with one params file; returns the executed notebook's path."""
    import jupytext
    import papermill

    source = root / "notebooks" / f"{stage}.py"
    params_file = root / "params" / stage / f"{config}.yaml"
    if not source.is_file():
        raise UserError(f"No notebook {source}; the stages are {', '.join(p.stem for p in (root / 'notebooks').glob('*.py'))}.")
    if not params_file.is_file():
        have = ", ".join(sorted(p.stem for p in params_file.parent.glob("*.yaml")))
        raise UserError(f"No params file {params_file}; choose CONFIG from {have or 'none'}.")
    params = yaml.safe_load(params_file.read_text()) or {}
    params.update(extra or {})
    out_dir = out_dir or root / "outputs" / "nb" / stage
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{config}.ipynb"
    partial = out_dir / f"{config}.partial.ipynb"
    src_ipynb = out_dir / f".{config}.source.ipynb"
    jupytext.write(jupytext.read(source), src_ipynb)
    os.environ["DEEPUNLEARN_PROGRESS"] = "text"  # the kernel inherits it: see training._progress
    try:
        papermill.execute_notebook(str(src_ipynb), str(partial), parameters=params, log_output=log_output,
                                   progress_bar=False, cwd=str(root), kernel_name="python3")
    except papermill.PapermillExecutionError as e:
        failed = out_dir / f"{config}.failed.ipynb"
        if partial.exists():
            os.replace(partial, failed)
        if e.ename == "UserError":
            raise UserError(f"{e.evalue.rstrip('.')}; details in {failed}.") from None
        raise
    finally:
        src_ipynb.unlink(missing_ok=True)
    os.replace(partial, final)
    (out_dir / f"{config}.failed.ipynb").unlink(missing_ok=True)
    return final


def main(argv: list[str] | None = None) -> int:
    """`python -m deepunlearn.render STAGE CONFIG`."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("stage")
    p.add_argument("config")
    args = p.parse_args(argv)
    t0 = time.time()
    print(f"[{time.strftime('%H:%M:%S')}] {args.stage}/{args.config}: rendering", flush=True)
    try:
        path = render(args.stage, args.config)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[{time.strftime('%H:%M:%S')}] {args.stage}/{args.config}: done in {time.time() - t0:.0f}s -> {path}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
