"""The ``keras-bn inspect`` command line, on every legacy fixture."""

import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from legacy_fixtures import EXAMPLES, example_arrays

from keras_bn.cli import main


@pytest.fixture
def arrays(rng):
    return example_arrays(rng)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_inspect_every_fixture(tmp_path, capsys, arrays, example):
    path = tmp_path / f"{example.name}.h5"
    example.write(path, arrays)
    assert main(["inspect", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"file:          {path}"
    heading = {
        "keras0_sequential": "Keras 0.x Sequential",
        "keras0_graph": "Keras 0.x Graph",
        "keras1": "Keras 1.x",
        "keras2": "Keras 2.x",
    }[example.format]
    assert lines[1].startswith(f"format:        {heading}")
    assert lines[2] == f"Keras version: {example.keras_version or 'not recorded'}"
    # Every array's shape and dtype, in the file's order.
    rows = [re.search(r"(\(.*\))\s+(\w+)$", line) for line in lines]
    shapes = [" ".join(row.groups()) for row in rows if row]
    expected = ["(4, 3) float64", "(3,) float64", "(3,) float64", "(3,) float64"]
    if example.form is not None:
        expected += ["(3,) float64", "(3,) float64"]
    assert shapes == expected


@pytest.mark.parametrize(
    "example, meaning",
    [
        ("keras0_sequential", "standard deviation"),
        (
            "keras1_model_1.0.7_theano",
            "(sqrt(variance) + epsilon), default epsilon 1e-06",
        ),
        ("keras2_weights", "sqrt(variance + epsilon), default epsilon 0.001"),
        ("keras1_weights_std", 'running_std="std" or "variance"'),
    ],
)
def test_inspect_tells_what_the_fourth_array_is(
    tmp_path, capsys, arrays, example, meaning
):
    (chosen,) = [e for e in EXAMPLES if e.name == example]
    path = tmp_path / "weights.h5"
    chosen.write(path, arrays)
    main(["inspect", str(path)])
    (line,) = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("BatchNormalization fourth array:")
    ]
    assert meaning in line


def test_inspect_lists_layers_without_weights(tmp_path, capsys, arrays):
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    main(["inspect", str(path)])
    assert "layer_1  (no weights)" in capsys.readouterr().out


def unreadable_files(directory, arrays):
    """``{kind: path}`` of files the command must refuse."""
    text = directory / "text.h5"
    text.write_text("not HDF5")
    truncated = directory / "truncated.h5"
    EXAMPLES[0].write(truncated, arrays)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    unknown = directory / "unknown.h5"
    with h5py.File(unknown, "w") as f:
        f.create_dataset("x", data=np.zeros(2))
    return {
        "text": (text, "not an HDF5 file"),
        "truncated": (truncated, "truncated or damaged"),
        "unknown": (unknown, "none of the legacy Keras layouts"),
        "missing": (directory / "absent.h5", "no file"),
    }


@pytest.mark.parametrize("kind", ["text", "truncated", "unknown", "missing"])
def test_unreadable_file_one_line_error(tmp_path, capsys, arrays, kind):
    path, message = unreadable_files(tmp_path, arrays)[kind]
    assert main(["inspect", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("keras-bn: error: ")
    assert message in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    with pytest.raises(SystemExit) as raised:
        main(["inspect"])
    assert raised.value.code == 2


def run(command):
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )


def test_python_dash_m_and_the_entry_point(tmp_path, arrays):
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    commands = [[sys.executable, "-m", "keras_bn.cli"]]
    script = shutil.which("keras-bn", path=os.path.dirname(sys.executable))
    if script is not None:
        commands.append([script])
    for command in commands:
        result = run([*command, "inspect", str(path)])
        assert result.returncode == 0, result.stderr
        assert "Keras 0.x Sequential" in result.stdout
        bad = run([*command, "inspect", str(tmp_path / "absent.h5")])
        assert bad.returncode == 1
        assert bad.stderr.strip().splitlines()[-1].startswith("keras-bn: error: ")
