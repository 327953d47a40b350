"""Run a notebook headless with parameters, the way papermill does, through nbclient.

Papermill's convention: the cell tagged ``parameters`` holds the defaults, and a new cell tagged
``injected-parameters`` is inserted right after it with the run's values, so they override the
defaults and everything after sees them. ``extra_cells`` are inserted after that cell (the tests use
it to try a network connection from inside the kernel).

    python -m kagglekit.delivery.notebook notebooks/inference.ipynb --out run.ipynb -p OUTPUT_DIR='"/tmp/out"'

(each ``-p NAME=VALUE`` value is JSON; exit code 1 and the failing cell's error when a cell raises).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kagglekit.errors import ConfigError, KagglekitError


class NotebookError(KagglekitError, RuntimeError):
    """A notebook cell raised while the notebook ran headless."""


def inject_parameters(nb, parameters: dict, extra_cells=()) -> None:
    """Insert the ``injected-parameters`` cell (and ``extra_cells``, code strings) after the ``parameters`` cell."""
    import nbformat

    tagged = [k for k, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise ConfigError("the notebook has no cell tagged 'parameters'; tag the cell that holds the defaults")
    source = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
    cells = [nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})]
    cells += [nbformat.v4.new_code_cell(code) for code in extra_cells]
    nb.cells[tagged[0] + 1 : tagged[0] + 1] = cells


def execute_notebook(path, parameters: dict | None = None, out=None, cwd=None, timeout: int = 1800,
                     kernel_name: str = "python3", extra_cells=()):
    """Run the notebook at ``path`` with ``parameters`` in a fresh ``kernel_name`` kernel; return the executed notebook.

    ``cwd`` is the kernel's working folder (default: the notebook's). The executed notebook, with
    its outputs, is written to ``out`` when given, also when a cell fails. Raises
    :class:`NotebookError` with the failing cell's error.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, parameters or {}, extra_cells)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(cwd or path.parent)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        raise NotebookError(f"{path} failed:\n{exc}") from None
    finally:
        if out is not None:
            nbformat.write(nb, str(out))
    return nb


def run_kernel(notebook, out: Path, competition: str, models: str, working: Path, timeout: int = 1800):
    """Run the inference ``notebook`` headless as a demo's kernel: its input root is ``out/input`` with the
    ``competition`` and ``models`` datasets, its output folder ``working`` (created), where the executed
    notebook is written too. Returns the executed notebook."""
    out, working = Path(out), Path(working)
    working.mkdir(parents=True, exist_ok=True)
    parameters = {"INPUT_ROOT": str((out / "input").resolve()), "COMPETITION": competition, "MODELS": models,
                  "OUTPUT_DIR": str(working.resolve())}
    return execute_notebook(notebook, parameters, out=working / "inference.executed.ipynb", cwd=out.resolve(),
                            timeout=timeout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kagglekit.delivery.notebook", description=__doc__.split("\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("-p", "--parameter", action="append", default=[], help="NAME=JSON value (repeatable)")
    parser.add_argument("--cell", action="append", default=[], help="code of an extra cell after the parameters")
    parser.add_argument("--out", help="where to write the executed notebook")
    parser.add_argument("--cwd", help="the kernel's working folder")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    parameters = {}
    for item in args.parameter:
        name, sep, value = item.partition("=")
        try:
            parameters[name] = json.loads(value)
        except json.JSONDecodeError:
            sep = ""
        if not sep or not name.isidentifier():
            parser.error(f"-p takes NAME=JSON, e.g. OUTPUT_DIR='\"/tmp/out\"'; got {item!r}")
    try:
        execute_notebook(args.notebook, parameters, args.out, args.cwd, args.timeout, extra_cells=args.cell)
    except KagglekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
