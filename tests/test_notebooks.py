"""Executes every notebooks/*.ipynb top to bottom, so that a broken notebook
fails the suite, and checks that the committed copies carry their outputs.

The notebooks run in a kernel of this Python environment ("python3", which
Jupyter resolves to the running interpreter), from notebooks/ as Jupyter runs
them, since they import the Figure-1 experiment from ../scripts; whatever
they write goes to temporary folders, never into the repository. They run on
the default backend only: the CI's per-backend runs would repeat them for
nothing. `python scripts/run_notebooks.py` refreshes the committed outputs.
"""

import asyncio
import os
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
        reason="the notebooks run on the default backend (TensorFlow) only",
    ),
]

NOTEBOOK_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks"
)
NOTEBOOKS = sorted(name for name in os.listdir(NOTEBOOK_DIR) if name.endswith(".ipynb"))
# Each notebook runs in under 90 s on 2 CPU cores; the bound catches a hang
# with room for a busy machine.
NOTEBOOK_TIMEOUT_S = 300


# TensorFlow's native start-up log, which the notebooks keep out of their
# first cell (scripts/native_log.py); nothing filters it from the outputs.
NATIVE_START_UP_LOG = re.compile(
    r"absl::InitializeLog|cudart_stub|cuInit|cpu_feature_guard"
    r"|To enable the following instructions|^[IWEF]\d{4} [\d:.]+\s+\d+ ",
    re.MULTILINE,
)


def read(name):
    return nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def has_image(cell):
    return any("image/png" in output.get("data", {}) for output in cell.outputs)


def native_start_up_log(notebook):
    """The stderr outputs that hold TensorFlow's native start-up log."""
    return [
        output.text
        for cell in code_cells(notebook)
        for output in cell.outputs
        if output.output_type == "stream"
        and output.name == "stderr"
        and NATIVE_START_UP_LOG.search(output.text)
    ]


def test_the_notebooks_are_there():
    assert {
        "01_quickstart.ipynb",
        "02_internal_covariate_shift.ipynb",
        "03_legacy_weights.ipynb",
        "04_batch_renormalization.ipynb",
    } <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_was_run_top_to_bottom(name):
    cells = code_cells(read(name))
    # Counts 1, 2, 3, ...: one run, in order, no cell skipped.
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    for cell in cells:
        assert not any(output.output_type == "error" for output in cell.outputs)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_holds_no_native_start_up_log(name):
    assert native_start_up_log(read(name)) == []


# Figure 1; mode 0 against mode 1.
@pytest.mark.parametrize(
    "name",
    [
        "02_internal_covariate_shift.ipynb",
        "03_legacy_weights.ipynb",
        "04_batch_renormalization.ipynb",
    ],
)
def test_the_plot_is_in_the_committed_notebook(name):
    assert any(map(has_image, code_cells(read(name))))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name):
    committed = read(name)
    notebook = read(name)
    files_before = sorted(os.listdir(NOTEBOOK_DIR))
    client = nbclient.NotebookClient(
        notebook,
        timeout=NOTEBOOK_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": NOTEBOOK_DIR}},
    )
    # nbclient's own timeout is per cell; this one bounds the notebook.
    asyncio.run(asyncio.wait_for(client.async_execute(), NOTEBOOK_TIMEOUT_S))
    # The working folder is the repository's: the notebook leaves it as it was.
    assert sorted(os.listdir(NOTEBOOK_DIR)) == files_before
    # A plot committed in a cell is drawn again there.
    for before, after in zip(code_cells(committed), code_cells(notebook)):
        assert has_image(after) or not has_image(before), before.source
    # A fresh kernel starts TensorFlow quietly.
    assert native_start_up_log(notebook) == []
