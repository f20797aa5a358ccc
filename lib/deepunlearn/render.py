"""Render a stage notebook: notebooks/<stage>.py + params/<stage>/<config>.yaml → outputs/nb/<stage>/<name>.ipynb.

The parameters are read and checked by `config.read` first (an unknown key or a wrong type stops
here, before a kernel starts). The kernel runs in `notebooks/`, where JupyterLab starts one, and
everything it writes is anchored at the project root. The executed notebook is written to
`<name>.partial.ipynb` and renamed only on success, so a failed run never leaves something that
looks finished; a failed one is kept as `<name>.failed.ipynb`. A `UserError` raised inside the
notebook reaches the caller as its one sentence; any other error is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deepunlearn import config, paths
from deepunlearn.errors import UserError


def output_name(config_name: str, sets: dict) -> str:
    """The executed notebook's name: the config's, plus the pair when the command line chose one."""
    pair = [str(sets[k]) for k in ("dataset", "arch") if sets.get(k) is not None]
    return "-".join([config_name, *pair])


def render(stage: str, config_name: str, sets: list[str] | tuple[str, ...] = (), *, name: str | None = None,
           out_dir: Path | None = None, extra: dict | None = None, log_output: bool = True) -> Path:
    """Execute one stage notebook with one params file (and overrides); returns the executed notebook's path."""
    import jupytext
    import papermill

    source = paths.notebook(stage)
    if stage not in paths.STAGES or not source.is_file():
        raise UserError(f"Unknown stage {stage!r}; choose one of {', '.join(paths.STAGES)}.")
    params = config.read(stage, config_name, sets, **(extra or {}))
    name = name or output_name(config_name, config.parse_sets(sets))
    out_dir = out_dir or paths.nb_dir(stage)
    out_dir.mkdir(parents=True, exist_ok=True)
    final, partial = out_dir / f"{name}.ipynb", out_dir / f"{name}.partial.ipynb"
    failed, src_ipynb = out_dir / f"{name}.failed.ipynb", out_dir / f".{name}.source.ipynb"
    jupytext.write(jupytext.read(source), src_ipynb)
    # the kernel inherits these: text progress (see training._progress), and the root its paths hang on
    kernel_env = {"DEEPUNLEARN_PROGRESS": "text", "DEEPUNLEARN_ROOT": str(paths.root())}
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    try:
        # the kernel's own prints (progress lines, notes) reach this terminal as they come; tables stay in
        # the executed notebook
        echo = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if log_output else {}
        papermill.execute_notebook(str(src_ipynb), str(partial), parameters=params, progress_bar=False,
                                   cwd=str(source.parent), kernel_name="python3", **echo,
                                   # the kernel's own log only warns that its local TCP sockets are unencrypted
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except papermill.PapermillExecutionError as e:
        if partial.exists():
            os.replace(partial, failed)
        if e.ename == "UserError":
            raise UserError(f"{e.evalue.rstrip('.')}; details in {failed}.") from None
        raise
    finally:
        src_ipynb.unlink(missing_ok=True)
        for k, v in saved.items():  # this process keeps its own environment
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    os.replace(partial, final)
    failed.unlink(missing_ok=True)
    return final


def main(argv: list[str] | None = None) -> int:
    """`python -m deepunlearn.render STAGE CONFIG [--set K=V]`: the same as `deepunlearn run`."""
    from deepunlearn.cli import main as cli_main

    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
