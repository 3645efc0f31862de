"""Re-executes notebooks/*.ipynb in place and saves them with their outputs.

    python scripts/run_notebooks.py [--backend BACKEND] [NOTEBOOK ...]

The notebooks are their own source: edit them in Jupyter (or with nbformat),
then run this so that the committed copies carry the outputs of one
top-to-bottom run, plots included. Without names every notebook runs; a name
is a notebook's file name, with or without ``.ipynb`` (``01_quickstart``).

Each notebook runs in a kernel of this Python environment ("python3", which
Jupyter resolves to the running interpreter), from notebooks/ as Jupyter runs
it, on the TensorFlow backend unless --backend says otherwise: the committed
copies, and the numbers notebook 02's text quotes, are TensorFlow's. The
outputs are stored as the kernel printed them: the notebooks keep
TensorFlow's native start-up log out themselves (scripts/native_log.py).
tests/test_notebooks.py executes them again and checks the committed copies.
A notebook whose run fails is left as it was.
"""

import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks"
)
BACKENDS = ("tensorflow", "jax", "torch")
# Per cell; the slowest cell (notebook 02's training) takes about a minute.
CELL_TIMEOUT_S = 600


def notebook_paths(names):
    """The notebooks to run, as paths; exits naming any unknown one."""
    available = sorted(
        name.removesuffix(".ipynb")
        for name in os.listdir(NOTEBOOK_DIR)
        if name.endswith(".ipynb")
    )
    wanted = [name.removesuffix(".ipynb") for name in names] or available
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        sys.exit(f"unknown notebooks {unknown}; expected some of {available}")
    return [os.path.join(NOTEBOOK_DIR, f"{name}.ipynb") for name in wanted]


def execute(path):
    """Runs the notebook at ``path`` top to bottom and saves it with its
    outputs; raises CellExecutionError (and saves nothing) if a cell fails."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": NOTEBOOK_DIR}},
    ).execute()
    nbformat.write(notebook, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow")
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK")
    args = parser.parse_args(argv)
    paths = notebook_paths(args.notebooks)
    # The kernel inherits this process's environment.
    os.environ["KERAS_BACKEND"] = args.backend
    failed = []
    for path in paths:
        start = time.perf_counter()
        try:
            execute(path)
        except CellExecutionError as error:
            failed.append(path)
            print(f"{path}: FAILED, left as it was\n{error}", file=sys.stderr)
            continue
        print(f"{path}: executed in {time.perf_counter() - start:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
