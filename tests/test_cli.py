"""The ``keras-bn inspect`` command line, on every legacy fixture."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from legacy_fixtures import EXAMPLES, example_arrays

import keras_bn
from keras_bn.cli import main

REAL = Path(__file__).resolve().parent / "fixtures" / "real"


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
        ("keras1_model_1.0.7_theano", "(sqrt(variance) + epsilon)"),
        ("keras2_weights", "sqrt(variance + epsilon)"),
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


ZOO = REAL.parent / "real_zoo"

# Whole-model files of the real releases: BatchNormalization with the
# default and another epsilon, in mode 0 and 1, and convolutions of every
# kind on both backends.
INSPECTED = [
    *(REAL / "keras-1.2.2-tensorflow" / f"{name}.model.h5"
      for name in ("dense", "dense_eps", "dense_mode1")),
    REAL / "keras-1.0.8-theano" / "conv2d_cf.model.h5",
    *(ZOO / release / f"{name}.model.h5"
      for release in ("keras-1.2.2-theano", "keras-2.2.4-theano",
                      "keras-2.2.4-tensorflow")
      for name in ("conv2d_rect", "lstm")),
    # Keras 1 had separable convolutions on TensorFlow only.
    ZOO / "keras-1.2.2-tensorflow" / "separable2d.model.h5",
    ZOO / "keras-2.2.4-theano" / "separable2d.model.h5",
    ZOO / "keras-2.2.4-theano" / "depthwise2d.model.h5",
]  # fmt: skip


def _file_facts(path):
    """What the file itself says, read with h5py and json alone:
    ``{batch-normalization layer: (epsilon, mode)}``, each kernel's ``(layer,
    array name)`` (arrays of rank 3 or more), the layers' dim_ordering, the
    backend (from the release folder's name) and the Keras major version."""
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        group = f["model_weights"]
        kernels = []
        for layer in group.attrs["layer_names"]:
            layer = layer.decode()
            for name in group[layer].attrs["weight_names"]:
                name = name.decode()
                if group[layer][name].ndim >= 3:
                    kernels.append((layer, name))
    layers = config["config"]
    layers = layers["layers"] if isinstance(layers, dict) else layers
    norms = {
        layer["config"]["name"]: (
            layer["config"]["epsilon"],
            layer["config"].get("mode", 0),
        )
        for layer in layers
        if layer["class_name"] == "BatchNormalization"
    }
    orderings = {
        layer["config"]["name"]: layer["config"].get("dim_ordering") for layer in layers
    }
    release = path.parent.name
    major = int(release.split("-")[1].split(".")[0])
    return norms, kernels, orderings, release.rsplit("-", 1)[1], major


@pytest.mark.parametrize("path", INSPECTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_inspect_tells_each_layers_epsilon_mode_and_kernels(capsys, path):
    norms, kernels, orderings, backend, major = _file_facts(path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    for name, (epsilon, mode) in norms.items():
        assert f"  {name}: epsilon {epsilon:g} from its config, mode {mode}\n" in out
    # The samplewise formula is told only where a layer computed it.
    assert ("mode 1 (samplewise)" in out) == any(m == 1 for _, m in norms.values())
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    told = {}
    for layer, name in kernels:
        (line,) = [x for x in lines if x.startswith(f"  {layer} {name}: ")]
        told[name] = line
        if backend == "theano" and "depthwise" not in name:
            assert "; flipped in its spatial axes" in line
        else:
            assert "not flipped" in line
        if major >= 2:
            assert "Keras 3's layout, kept" in line
        elif orderings[layer] == "th":
            assert "channels-first (dim_ordering 'th'), transposed" in line
        else:
            assert "channels-last (dim_ordering 'tf')" in line
    if not kernels:
        assert "convolution kernels: none" in out


def test_inspect_without_a_config_says_the_epsilon_is_the_default(tmp_path, capsys):
    path = ZOO / "keras-2.2.4-theano" / "conv2d_rect.weights.h5"
    main(["inspect", str(path)])
    out = capsys.readouterr().out
    # Keras 2's default epsilon, as its BatchNormalization's signature has it.
    assert (
        "BatchNormalization epsilon: the release's default 0.001 "
        "(the file records no epsilon)"
    ) in out
    assert "mode 1" not in out  # Keras 2 had no samplewise mode


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


@pytest.mark.slow
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


# -- keras-bn convert ------------------------------------------------------------


# (release directory, model, files, batch normalization): a Keras 1.x
# whole-model channels-first convolution, a Keras 0.x convolution from JSON +
# weights (--backend: 0.x files do not record it), a Keras 2.x whole model
# into the stock layer.
CONVERSIONS = [
    ("keras-1.0.8-theano", "conv2d_cf", ["conv2d_cf.model.h5"], "keras_bn"),
    ("keras-0.3.3-theano", "conv1d", ["conv1d.json", "conv1d.weights.h5"], "keras_bn"),
    ("keras-2.2.4-tensorflow", "conv1d", ["conv1d.model.h5"], "keras"),
]

FRESH = """
import sys
import keras_bn, keras
import numpy as np
for path, npz in zip(sys.argv[1::2], sys.argv[2::2]):
    model = keras.saving.load_model(path)
    data = np.load(npz)
    predicted = np.asarray(model.predict(data["x"], verbose=0))
    scale = max(1.0, float(np.max(np.abs(data["y"]))))
    error = float(np.max(np.abs(predicted - data["y"])))
    print(path, predicted.shape == data["y"].shape, error <= 1e-4 * scale, error)
"""


def _convert_argv(directory, files, target, new):
    argv = ["convert", str(REAL / directory / files[0]), str(new)]
    if len(files) > 1:
        argv += ["--weights", str(REAL / directory / files[1])]
    if directory.startswith("keras-0."):
        argv += ["--backend", directory.rsplit("-", 1)[1]]  # not in 0.x files
    return argv + ["--batch-normalization", target]


@pytest.mark.slow
def test_convert_writes_keras_files_that_predict_what_the_release_did(tmp_path, capsys):
    pairs = []
    for directory, name, files, target in CONVERSIONS:
        new = tmp_path / f"{directory}-{name}.keras"
        assert main(_convert_argv(directory, files, target, new)) == 0
        out, err = capsys.readouterr()
        assert err == ""
        assert f"wrote:         {new}" in out and "layers:" in out
        assert "__array__" not in out  # only keras_bn's own warnings
        pairs += [str(new), str(REAL / directory / f"{name}.npz")]
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"{d}-{n}.keras" for d, n, _, _ in CONVERSIONS
    )
    # Loaded in a fresh process: keras_bn's layer deserializes from the file.
    result = run([sys.executable, "-c", FRESH, *pairs])
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(CONVERSIONS)
    for line in lines:
        assert " True True " in line, line


def _unknown_layer(tmp_path):
    source = REAL / "keras-1.0.8-theano" / "dense.json"
    config = json.loads(source.read_text())
    config["config"][1]["class_name"] = "Highway"
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(config))
    weights = REAL / "keras-1.0.8-theano" / "dense.weights.h5"
    return [str(path), "--weights", str(weights)], "(Highway)"


def _truncated(tmp_path):
    path = tmp_path / "cut.h5"
    source = REAL / "keras-2.2.4-tensorflow" / "dense.model.h5"
    path.write_bytes(source.read_bytes()[:3000])
    return [str(path)], "cut.h5"


def _misfit(tmp_path):
    directory = REAL / "keras-1.0.8-theano"
    weights = str(directory / "conv1d.weights.h5")
    return [str(directory / "dense.json"), "--weights", weights], "conv1d.weights.h5"


@pytest.mark.parametrize("bad", [_unknown_layer, _truncated, _misfit])
def test_convert_refuses_bad_input_and_writes_nothing(tmp_path, capsys, bad):
    old, expected = bad(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    new = out_dir / "new.keras"
    assert main(["convert", old[0], str(new), *old[1:]]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("keras-bn: error: ")
    assert expected in err
    assert os.listdir(out_dir) == []


def test_convert_needs_weights_for_an_architecture_and_a_keras_name(tmp_path, capsys):
    directory = REAL / "keras-1.0.8-theano"
    assert (
        main(["convert", str(directory / "dense.json"), str(tmp_path / "a.keras")]) == 1
    )
    assert "weights" in capsys.readouterr().err
    new = tmp_path / "a.h5"
    assert main(["convert", str(directory / "dense.model.h5"), str(new)]) == 1
    assert "ending in .keras" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_inspect_into_a_closed_pipe_is_quiet(tmp_path, arrays):
    """``keras-bn inspect FILE | head``: the reader goes away first; no
    traceback, exit 0."""
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_bn.cli", "inspect", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    process.stdout.close()  # before it prints: it is still importing Keras
    _, stderr = process.communicate(timeout=300)
    assert "Traceback" not in stderr.decode(), stderr.decode()
    assert "BrokenPipeError" not in stderr.decode()
    assert process.returncode == 0


def test_convert_speaks_in_its_own_options(tmp_path, capsys):
    """Its errors name --backend and --weights, not load_model's backend= and
    weights=; --keras-version and --channels-first reach load_model."""
    directory = REAL / "keras-0.3.3-theano"
    out = tmp_path / "m.keras"
    code = main(
        ["convert", str(directory / "conv2d_cf.json"), str(out),
         "--weights", str(directory / "conv2d_cf.weights.h5")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "--backend" in err and "backend=" not in err, err
    code = main(["convert", str(directory / "conv2d_cf.json"), str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "--weights" in err and "weights=" not in err, err
    assert os.listdir(tmp_path) == []
    directory = REAL / "keras-1.0.8-theano"
    code = main(
        ["convert", str(directory / "dense.json"), str(out),
         "--weights", str(directory / "dense.weights.h5"),
         "--keras-version", "1.0.8", "--channels-first", "native"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    arrays = np.load(directory / "dense.npz")
    model = keras.saving.load_model(out)
    got = model.predict(arrays["x"], verbose=0)
    assert np.max(np.abs(got - arrays["y"])) <= 1e-4 * np.max(np.abs(arrays["y"]))


@pytest.mark.slow
def test_without_a_backend(tmp_path):
    """No KERAS_BACKEND and no TensorFlow (a stand-in that fails to import,
    as an absent one does): --help and --version work, a command that needs
    Keras says in one line what to set, and the library's names say so too."""
    fake = tmp_path / "site" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorflow'\", "
        "name='tensorflow')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path / "site"), env.get("PYTHONPATH", "")]
    )

    def cli(*arguments):
        return subprocess.run(
            [sys.executable, "-m", "keras_bn.cli", *arguments],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip

    result = cli("--help")
    assert result.returncode == 0 and "usage: keras-bn" in result.stdout
    assert "Traceback" not in result.stderr
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"keras-bn {keras_bn.__version__}"
    # Reading a file needs no backend; rebuilding a model does.
    model = REAL / "keras-1.2.2-tensorflow" / "dense.model.h5"
    result = cli("inspect", str(model))
    assert result.returncode == 0 and "batchnormalization_2" in result.stdout
    result = cli("convert", str(model), str(tmp_path / "new.keras"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    # This environment has JAX and PyTorch: the advice names them.
    assert "set KERAS_BACKEND=jax (or torch), installed here" in line
    assert not (tmp_path / "new.keras").exists()
    result = subprocess.run(
        [sys.executable, "-c", "from keras_bn import BatchNormalization"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    # A short traceback: the advice, not Keras' import chain.
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("ImportError: ") and len(lines) < 8
    assert "KERAS_BACKEND" in result.stderr
    result = subprocess.run(
        [sys.executable, "-c", "from keras_bn.legacy import load_model"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert "KERAS_BACKEND" in result.stderr.strip().splitlines()[-1]


# What each command imports, seen from a fresh interpreter.
IMPORTED = """
import sys
from keras_bn.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted({"keras", "tensorflow", "jax", "torch"} & set(sys.modules)))
"""


@pytest.mark.parametrize(
    "argv, needs_keras",
    [
        (["--help"], False),
        (["--version"], False),
        (["inspect", str(REAL / "keras-1.0.8-theano" / "conv2d_cf.model.h5")], False),
        # A subprocess that imports Keras and its backend: seconds.
        pytest.param(
            ["convert", "absent.h5", "new.keras"], True, marks=pytest.mark.slow
        ),
    ],
    ids=["help", "version", "inspect", "convert"],
)
def test_only_convert_imports_keras(tmp_path, argv, needs_keras):
    """--help, --version and inspect start in well under a second because
    they import neither Keras nor a backend; convert needs both."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, *argv],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    imported = result.stdout.strip().splitlines()[-1]
    assert ("'keras'" in imported) == needs_keras, result.stdout + result.stderr


def test_convert_writes_through_a_temporary_file_in_the_destination(
    tmp_path, capsys, monkeypatch
):
    """The .keras file is written under a temporary name in its own folder,
    then renamed, with the umask's permissions (not mkstemp's 0600); a save
    that fails (a PermissionError whose message spans lines) gives one line,
    exit 1, and leaves nothing behind."""
    import tempfile

    directory = REAL / "keras-1.0.8-theano"
    arguments = [str(directory / "dense.json"), "--weights",
                 str(directory / "dense.weights.h5")]  # fmt: skip
    made_in = []
    original_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        made_in.append(kwargs.get("dir"))
        return original_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    out = tmp_path / "out" / "m.keras"
    out.parent.mkdir()
    umask = os.umask(0o022)
    try:
        assert main(["convert", arguments[0], str(out), *arguments[1:]]) == 0
    finally:
        os.umask(umask)
    capsys.readouterr()
    assert made_in == [str(out.parent)]
    assert os.listdir(out.parent) == ["m.keras"]
    assert os.stat(out).st_mode & 0o777 == 0o644

    def failing_save(self, *args, **kwargs):
        raise PermissionError("no room\nfor this\n file")

    monkeypatch.setattr(keras.Model, "save", failing_save)
    other = tmp_path / "out" / "n.keras"
    assert main(["convert", arguments[0], str(other), *arguments[1:]]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "PermissionError: no room for this file" in err
    assert os.listdir(out.parent) == ["m.keras"]


def _dense_arguments():
    directory = REAL / "keras-1.0.8-theano"
    return [str(directory / "dense.json"), "--weights",
            str(directory / "dense.weights.h5")]  # fmt: skip


def test_convert_keeps_an_existing_output_unless_told(tmp_path, capsys):
    """An existing NEW.keras is refused (and left as it was) without
    --overwrite, replaced with it."""
    source, *rest = _dense_arguments()
    out = tmp_path / "m.keras"
    out.write_bytes(b"mine")
    assert main(["convert", source, str(out), *rest]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert out.read_bytes() == b"mine"
    assert main(["convert", source, str(out), *rest, "--overwrite"]) == 0
    capsys.readouterr()
    assert out.read_bytes() != b"mine"
    assert keras.saving.load_model(out).count_params() > 0


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_convert_never_writes_over_what_it_reads(tmp_path, capsys, overwrite):
    """OLD == NEW (an HDF5 whole-model file named m.keras), by the same or
    another path to it, and NEW == --weights: refused, the file untouched."""
    source = REAL / "keras-2.2.4-tensorflow" / "dense.model.h5"
    old = tmp_path / "m.keras"
    old.write_bytes(source.read_bytes())
    (tmp_path / "sub").mkdir()
    for new in (old, tmp_path / "sub" / ".." / "m.keras"):
        assert main(["convert", str(old), str(new), *overwrite]) == 1
        assert "one of the files read" in capsys.readouterr().err
    weights = tmp_path / "w.keras"
    weights.write_bytes((REAL / "keras-1.0.8-theano" / "dense.weights.h5").read_bytes())
    json_path = str(REAL / "keras-1.0.8-theano" / "dense.json")
    argv = ["convert", json_path, str(weights), "--weights", str(weights)]
    assert main(argv + overwrite) == 1
    assert "one of the files read" in capsys.readouterr().err
    assert old.read_bytes() == source.read_bytes()
    assert (
        weights.read_bytes()
        == (REAL / "keras-1.0.8-theano" / "dense.weights.h5").read_bytes()
    )


@pytest.mark.slow
def test_convert_stopped_by_sigterm_leaves_nothing(tmp_path):
    """SIGTERM while the .keras file is written: the temporary file is
    removed and the process ends as SIGTERM ends it."""
    script = (
        "import os, signal, sys, keras\n"
        "from keras_bn.cli import main\n"
        "def save(self, *args, **kwargs):\n"
        "    open(args[0], 'wb').write(b'partial')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "keras.Model.save = save\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    source, *rest = _dense_arguments()
    result = subprocess.run(
        [sys.executable, "-c", script, "convert", source, str(out / "m.keras"), *rest],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == -signal.SIGTERM, result.stderr[-2000:]
    assert os.listdir(out) == []


# -- keras-bn convert on Keras 3 .keras files ---------------------------------------


def _keras_file(path, rng):
    """A functional model with stock Batch Normalizations (one inside a
    nested Sequential) and a keras_bn mode 1 layer, random weights and
    running statistics, saved at ``path``; its inputs and predictions."""
    L = keras.layers
    inner = keras.Sequential(
        [keras.Input((4,), name="inner_x"), L.Dense(4, name="inner_dense"),
         L.BatchNormalization(epsilon=1e-3, name="inner_bn")],
        name="inner",
    )  # fmt: skip
    x = keras.Input((6,), name="x")
    h = L.BatchNormalization(name="bn_a")(L.Dense(4, name="dense")(x))
    h = keras_bn.BatchNormalization(mode=1, name="samplewise")(inner(h))
    model = keras.Model(x, L.Dense(2, name="out")(h), name="model")
    for variable in model.weights:
        low = 0.3 if variable.name in ("moving_variance", "running_std") else -2.0
        variable.assign(rng.uniform(low, 2.0, variable.shape).astype("float32"))
    model.save(path)
    data = rng.normal(size=(8, 6)).astype("float32")
    return data, keras.ops.convert_to_numpy(model(data, training=False))


def _classes(model):
    return {
        layer.name: type(layer)
        for layer in [*model.layers, *model.get_layer("inner").layers]
    }


def test_convert_swaps_the_batch_normalizations_of_a_keras_file(tmp_path, capsys, rng):
    """Stock -> keras_bn (the default) and back, each file predicting as the
    original, the report printed; an existing output kept without
    --overwrite."""
    source, middle, back = (tmp_path / f"{n}.keras" for n in ("in", "mid", "out"))
    data, expected = _keras_file(source, rng)

    assert main(["convert", str(source), str(middle)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"converted:     {source} (a Keras 3 .keras file)",
        "swapped:",
        "  bn_a: now keras_bn.BatchNormalization",
        "  inner/inner_bn: now keras_bn.BatchNormalization",
        "kept:",
        "  none",
        f"wrote:         {middle}",
    ]
    argv = ["convert", str(middle), str(back), "--batch-normalization", "keras"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"converted:     {middle} (a Keras 3 .keras file)",
        "swapped:",
        "  bn_a: now keras.layers.BatchNormalization",
        "  inner/inner_bn: now keras.layers.BatchNormalization",
        "kept:",
        "  samplewise: mode 1 (samplewise: each sample normalized with its own "
        "statistics); keras.layers.BatchNormalization has mode 0 only",
        "note:          the kept layers need keras_bn to load the file",
        f"wrote:         {back}",
    ]
    original = keras.saving.load_model(source)
    for path, norm in ((middle, keras_bn.BatchNormalization),
                       (back, keras.layers.BatchNormalization)):  # fmt: skip
        model = keras.saving.load_model(path)
        classes = _classes(model)
        assert classes == {
            **_classes(original),
            "bn_a": norm,
            "inner_bn": norm,
        }
        got = keras.ops.convert_to_numpy(model(data, training=False))
        scale = max(1.0, float(np.max(np.abs(expected))))
        assert np.max(np.abs(got - expected)) <= 1e-5 * scale
        for name in ("dense", "out"):
            for a, b in zip(model.get_layer(name).get_weights(),
                            original.get_layer(name).get_weights()):  # fmt: skip
                np.testing.assert_array_equal(a, b)

    written = back.read_bytes()
    assert main(argv) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert back.read_bytes() == written
    assert main(["convert", str(back), str(back), "--overwrite"]) == 1
    assert "one of the files read" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(tmp_path)) == ["in.keras", "mid.keras", "out.keras"]


def _not_a_zip(directory):
    path = directory / "notes.keras"
    path.write_text("not a model\n")
    return path, "neither a Keras 3 archive (a zip file) nor an HDF5 file"


def _cut_short(directory):
    whole = directory / "whole.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(whole)
    path = directory / "cut.keras"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return path, "neither a Keras 3 archive"


def _foreign_zip(directory):
    import zipfile

    path = directory / "foreign.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "a zip, not a model")
    return path, "cannot load it as a Keras 3 model"


def _missing(directory):
    return directory / "absent.keras", "absent.keras: no such file."


@pytest.mark.parametrize("bad", [_not_a_zip, _cut_short, _foreign_zip, _missing])
def test_convert_refuses_a_keras_file_it_cannot_read(tmp_path, capsys, bad):
    path, expected = bad(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["convert", str(path), str(out_dir / "new.keras")]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("keras-bn: error: ")
    assert expected in err, err
    assert os.listdir(out_dir) == []


def test_convert_refuses_old_file_options_for_a_keras_file(tmp_path, capsys, rng):
    source = tmp_path / "in.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(source)
    for option in (["--weights", str(source)], ["--channels-first", "native"],
                   ["--backend", "theano"], ["--keras-version", "1.0.8"],
                   ["--dim-ordering", "th"]):  # fmt: skip
        new = tmp_path / "new.keras"
        assert main(["convert", str(source), str(new), *option]) == 1
        err = capsys.readouterr().err
        assert f"{option[0]} is for old Keras files" in err, err
        assert not new.exists()


@pytest.mark.parametrize(
    "release, formula",
    [
        ("keras-0.3.3-theano", "(x - mean) / (std + epsilon)"),
        ("keras-1.1.2-tensorflow", "(x - mean) / (sqrt(var + epsilon) + epsilon)"),
    ],
)
def test_inspect_of_a_weights_file_tells_the_samplewise_formula(
    capsys, release, formula
):
    """A Keras 0.x or 1.x weights file records no mode: its layers may have
    normalized samplewise, and the report says how that release did."""
    assert main(["inspect", str(REAL / release / "dense.weights.h5")]) == 0
    (line,) = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("mode 1 (samplewise), where a layer used it: ")
    ]
    assert formula in line


def test_inspect_of_a_keras1_file_with_its_version_and_no_config(tmp_path, capsys):
    """A Keras 1 layout that records its version but no model config: its
    fourth array is told, and the samplewise formula of Keras 1 still is."""
    path = tmp_path / "versioned.h5"
    shutil.copy(REAL / "keras-1.1.2-tensorflow" / "dense.weights.h5", path)
    with h5py.File(path, "r+") as file:
        file.attrs["keras_version"] = "1.1.2"
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "BatchNormalization fourth array: variance" in out
    assert (
        "mode 1 (samplewise), where a layer used it: "
        "(x - mean) / (sqrt(var + epsilon) + epsilon)"
    ) in out


# -- failures on the way: the output folder, a swap, the backend, the reader ------


def test_convert_into_a_folder_that_does_not_exist(tmp_path, capsys):
    """NEW.keras in a folder that is not there: one line naming the folder,
    exit 1, before anything is read or built."""
    source, *rest = _dense_arguments()
    folder = tmp_path / "absent"
    assert main(["convert", source, str(folder / "m.keras"), *rest]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"keras-bn: error: {folder}: no such folder for the output.\n"
    assert os.listdir(tmp_path) == []


def test_convert_of_a_compiled_keras_file_says_it_compiles_again(tmp_path, capsys):
    """A compiled .keras file is compiled again from its compile config; the
    report says that the optimizer's state is not carried."""
    source, new = tmp_path / "in.keras", tmp_path / "out.keras"
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization(name="bn")]
    )
    model.compile(optimizer="sgd", loss="mse")
    model.save(source)
    assert main(["convert", str(source), str(new)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"converted:     {source} (a Keras 3 .keras file)",
        "swapped:",
        "  bn: now keras_bn.BatchNormalization",
        "kept:",
        "  none",
        "compiled:      again from its compile config; the optimizer's state "
        "is not carried",
        f"wrote:         {new}",
    ]
    assert keras.saving.load_model(new).compiled


@pytest.mark.parametrize("target, swap", [("keras_bn", "model_from_keras"),
                                          ("keras", "model_to_keras")])  # fmt: skip
@pytest.mark.parametrize("error_type", [TypeError, ValueError])
def test_convert_of_a_keras_file_it_cannot_swap(
    tmp_path, capsys, monkeypatch, target, swap, error_type
):
    """A model whose layers the swap refuses (a ValueError or TypeError, as
    for a subclassed model): one line naming the file and the reason, exit
    1, nothing written."""
    from keras_bn import convert

    def refuse(model):
        raise error_type("a subclassed model: its layers cannot be rebuilt")

    monkeypatch.setattr(convert, swap, refuse)
    source = tmp_path / "in.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["convert", str(source), str(out_dir / "new.keras")]
    assert main([*argv, "--batch-normalization", target]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"keras-bn: error: {source}: cannot swap its layers: a subclassed "
        "model: its layers cannot be rebuilt\n"
    )
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize(
    "name, expected",
    [
        ("tensorflow", "Keras cannot import its backend (tensorflow, named by "
                       "KERAS_BACKEND): set KERAS_BACKEND=torch, installed here."),
        ("yaml_extra", "{source}: ModuleNotFoundError: No module named "
                       "'yaml_extra'"),
    ],
    ids=["backend", "another-module"],
)  # fmt: skip
def test_convert_without_a_module_it_needs(
    tmp_path, capsys, monkeypatch, name, expected
):
    """A ModuleNotFoundError while converting: for Keras' backend, the one
    line of advice (here: TensorFlow named but missing, PyTorch installed);
    for any other module, the error itself; exit 1 either way."""
    import importlib.util

    from keras_bn.legacy import models

    def rebuild(*args, **kwargs):
        raise ModuleNotFoundError(f"No module named '{name}'", name=name)

    real_find_spec = importlib.util.find_spec

    def find_spec(module, *args, **kwargs):
        if module in ("tensorflow", "jax", "torch"):
            return real_find_spec("os") if module == "torch" else None
        return real_find_spec(module, *args, **kwargs)

    monkeypatch.setattr(models, "rebuild", rebuild)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    source, *rest = _dense_arguments()
    assert main(["convert", source, str(tmp_path / "m.keras"), *rest]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"keras-bn: error: {expected.format(source=source)}\n"
    assert os.listdir(tmp_path) == []


def test_an_error_message_is_one_line_of_at_most_2000_characters(capsys):
    """Whitespace (newlines included) collapses to single spaces, and a
    message past 2000 characters is cut to 1997 and '...'."""
    assert keras_bn.cli._error("first\nsecond\t third") == 1
    assert capsys.readouterr().err == "keras-bn: error: first second third\n"
    assert keras_bn.cli._error("ab" * 1500) == 1
    err = capsys.readouterr().err
    assert err == "keras-bn: error: " + "ab" * 998 + "a...\n"
    assert len(err) == len("keras-bn: error: ") + 2000 + 1
    # Terminal styling from a quoted Keras error is dropped.
    assert keras_bn.cli._error("layer \x1b[1mdense\x1b[0m: bad") == 1
    assert capsys.readouterr().err == "keras-bn: error: layer dense: bad\n"


class _ClosedPipe:
    """A stdout whose reader has gone away, on the descriptor ``fd``."""

    def __init__(self, fd):
        self.fd = fd

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        return self.fd


def test_inspect_into_a_closed_pipe_points_stdout_at_devnull(
    tmp_path, monkeypatch, arrays
):
    """The reader went away before the report was printed: exit 0, and
    stdout's descriptor now writes to the null device, so that Python's own
    flush at exit cannot fail again."""
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    stand_in = tmp_path / "stdout"
    fd = os.open(stand_in, os.O_WRONLY | os.O_CREAT)
    try:
        monkeypatch.setattr(sys, "stdout", _ClosedPipe(fd))
        assert main(["inspect", str(path)]) == 0
        monkeypatch.undo()
        assert os.path.samestat(os.fstat(fd), os.stat(os.devnull))
        os.write(fd, b"after the pipe closed")
    finally:
        os.close(fd)
    assert stand_in.read_bytes() == b""


def test_termination_handler_outside_the_main_thread(tmp_path):
    """Signal handlers can be set from the main thread only: elsewhere the
    context leaves SIGTERM's handler as it is, and its body still runs."""
    import threading

    from keras_bn.cli import _removed_on_termination

    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with _removed_on_termination(str(tmp_path / "t.keras")):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_while_writing_removes_the_temporary_and_signals_again(
    tmp_path, monkeypatch
):
    """SIGTERM inside the context: the temporary file is removed, SIGTERM's
    default action is restored and the process sends SIGTERM to itself (here
    recorded instead of delivered), and the termination propagates."""
    from keras_bn import cli

    temporary = tmp_path / ".keras-bn-convert-x.keras"
    temporary.write_bytes(b"partial")
    sent = []

    def kill(pid, signum):
        sent.append((pid, signum, signal.getsignal(signal.SIGTERM)))

    monkeypatch.setattr(cli.os, "kill", kill)
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(cli._Terminated):
            with cli._removed_on_termination(str(temporary)):
                handler = signal.getsignal(signal.SIGTERM)
                assert handler is not before
                handler(signal.SIGTERM, None)  # as the signal would call it
        assert sent == [(os.getpid(), signal.SIGTERM, signal.SIG_DFL)]
        assert not temporary.exists()
    finally:
        signal.signal(signal.SIGTERM, before)


def test_inspect_names_each_layer_once_above_its_arrays(capsys):
    """The table gives a layer's name on its first array's row only, its
    arrays below it in the file's order, and "(no weights)" for a layer
    without any; the expected rows come from the file itself, by h5py."""
    path = REAL / "keras-1.2.2-theano" / "dense.weights.h5"
    expected = []
    with h5py.File(path, "r") as file:
        for name in file.attrs["layer_names"]:
            name = name.decode()
            arrays = [w.decode() for w in file[name].attrs["weight_names"]]
            if not arrays:
                expected.append((name, "(no weights)"))
            expected += [(name if i == 0 else "", a) for i, a in enumerate(arrays)]
    assert main(["inspect", str(path)]) == 0
    table = capsys.readouterr().out.split("\n\n", 1)[1].splitlines()
    column = table[0].index("array")
    rows = []
    for line in table[1:]:
        cell = line[column:].strip()
        array = "(no weights)" if cell == "(no weights)" else cell.split()[0]
        rows.append((line[:column].strip(), array))
    assert rows == expected


def test_a_name_ending_in_keras_is_a_keras_file_even_unread(tmp_path, capsys):
    """A NAME.keras input that cannot be opened is still taken for a Keras 3
    file (a zip, or not HDF5): options meant for old files are refused as
    such, before anything is read."""
    weights = REAL / "keras-1.0.8-theano" / "dense.weights.h5"
    for source in (tmp_path / "absent.keras", tmp_path / "folder.keras"):
        if source.name == "folder.keras":
            source.mkdir()
        argv = ["convert", str(source), str(tmp_path / "new.keras")]
        assert main([*argv, "--weights", str(weights)]) == 1
        err = capsys.readouterr().err
        assert "--weights is for old Keras files" in err, err
    assert sorted(os.listdir(tmp_path)) == ["folder.keras"]


def test_convert_transposes_channels_first_and_restores_sigterm(tmp_path, capsys):
    """Unless told, convert rewrites a channels-first model as channels-last
    (so that the file runs on every backend, TensorFlow's CPU included),
    predicting what the release did; and the SIGTERM handler it sets while
    writing is the caller's again afterwards."""
    directory = REAL / "keras-1.2.2-theano"
    new = tmp_path / "cf.keras"
    argv = ["convert", str(directory / "conv2d_cf.json"), str(new), "--weights",
            str(directory / "conv2d_cf.weights.h5")]  # fmt: skip

    def callers_handler(signum, frame):
        raise AssertionError("not expected to run")

    before = signal.signal(signal.SIGTERM, callers_handler)
    try:
        assert main(argv) == 0
        assert signal.getsignal(signal.SIGTERM) is callers_handler
    finally:
        signal.signal(signal.SIGTERM, before)
    capsys.readouterr()
    model = keras.saving.load_model(new)
    formats = {
        layer.get_config().get("data_format")
        for layer in model.layers
        if "data_format" in layer.get_config()
    }
    assert formats == {"channels_last"}
    arrays = np.load(directory / "conv2d_cf.npz")
    # It takes the release's channels-first input as it is.
    got = model.predict(arrays["x"], verbose=0)
    scale = float(np.max(np.abs(arrays["y"])))
    assert np.max(np.abs(got - arrays["y"])) <= 1e-4 * scale


@pytest.mark.parametrize(
    "advice, expected",
    [
        ("pass backend='theano'.", "pass --backend theano."),
        ('pass keras_version="1.2.2" to load it', "pass --keras-version 1.2.2 to load"),
        ("pass dim_ordering=th, or", "pass --dim-ordering th, or"),
        ("pass channels_first='native'; weights=...", "pass --channels-first native;"),
    ],
)
def test_advice_is_given_in_the_commands_own_options(advice, expected):
    """The loaders' advice names their keyword arguments; the command line
    gives it in its options, values without their quotes."""
    from keras_bn.cli import _in_option_terms

    assert expected in _in_option_terms(advice)


def test_inspect_tells_keras_bn_layers_from_stock_ones_in_a_keras3_file(
    tmp_path, capsys, rng
):
    """Keras 3 records a registered class as class_name "BatchNormalization"
    with registered_name "keras_bn>BatchNormalization": inspect reads the
    registered name, and tells keras_bn's running std from the stock
    layer's variance, each with its epsilon."""
    from legacy_fixtures import keras2_layer, write_keras2

    def layer(registered, name, epsilon):
        return {
            "module": "keras_bn" if registered else "keras.layers",
            "class_name": "BatchNormalization",
            "registered_name": registered,
            "config": {"name": name, "epsilon": epsilon, "axis": -1},
        }

    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                layer("keras_bn>BatchNormalization", "ours", 0.25),
                layer(None, "stock", 0.125),
            ],
        },
    }
    ours = dict(zip(("gamma", "beta", "running_mean", "running_std"),
                    rng.uniform(0.5, 1.5, size=(4, 3))))  # fmt: skip
    stock = dict(zip(("gamma", "beta", "moving_mean", "moving_variance"),
                     rng.uniform(0.5, 1.5, size=(4, 3))))  # fmt: skip
    path = tmp_path / "k3.h5"
    write_keras2(
        path,
        [keras2_layer("ours", ours), keras2_layer("stock", stock)],
        keras_version="3.15.1",
        backend="jax",
        model_config=config,
    )
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    (ours_line,) = [line for line in lines if line.startswith("  ours:")]
    (stock_line,) = [line for line in lines if line.startswith("  stock:")]
    assert "epsilon 0.25 from its config" in ours_line
    assert "standard deviation" in ours_line
    assert "epsilon 0.125 from its config" in stock_line
    assert "standard deviation" not in stock_line


def test_inspect_tells_the_samplewise_formula_only_with_a_mode_1_layer(capsys):
    """A file whose configs give every layer's mode prints the samplewise
    formula line only when one of them is mode 1 (mode 2, Keras 1's batch
    statistics at inference, has no such formula)."""
    lines = {}
    for mode in (1, 2):
        path = REAL / "keras-1.2.2-theano" / f"dense_mode{mode}.model.h5"
        assert main(["inspect", str(path)]) == 0
        lines[mode] = capsys.readouterr().out
    assert "mode 1 (samplewise)" in lines[1]
    assert "mode 1 (samplewise)" not in lines[2]


@pytest.mark.parametrize(
    "dim_ordering, told",
    [("th", "channels-first (dim_ordering 'th')"),
     ("tf", "channels-last (dim_ordering 'tf')"),
     (None, "layout not recorded")],
)  # fmt: skip
def test_inspect_tells_a_keras1_kernel_layout_as_recorded(
    tmp_path, capsys, dim_ordering, told
):
    """A Keras 1 whole-model file's convolution: its kernel's layout as its
    config records it, and "not recorded" where it does not."""
    from legacy_fixtures import keras1_layer, write_keras1

    kernel = np.zeros((2, 3, 3, 3), dtype="float32")
    config = {"name": "conv", "nb_filter": 2, "nb_row": 3, "nb_col": 3}
    if dim_ordering is not None:
        config["dim_ordering"] = dim_ordering
    layer = {"class_name": "Convolution2D", "config": config}
    model_config = {"class_name": "Sequential", "config": [layer]}
    path = tmp_path / "k1.h5"
    write_keras1(
        path,
        [keras1_layer("conv", {"W": kernel, "b": np.zeros(2, "float32")})],
        keras_version="1.2.2",
        model_config=model_config,
    )
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    (line,) = [line for line in lines if line.startswith("  conv ")]
    assert told in line


def test_convert_to_keras_bn_says_nothing_of_needing_keras_bn(tmp_path, capsys):
    """Swapping into keras_bn's layer, a Batch Normalization that stays
    stock (one inside a wrapper) is listed as kept, and the file needs
    nothing more to load: no note that the kept layers need keras_bn."""
    inputs = keras.Input((4, 3))
    wrapped = keras.layers.TimeDistributed(keras.layers.BatchNormalization())
    outputs = keras.layers.BatchNormalization()(wrapped(inputs))
    source = tmp_path / "in.keras"
    keras.Model(inputs, outputs).save(source)
    new = tmp_path / "new.keras"
    argv = ["convert", str(source), str(new), "--batch-normalization", "keras_bn"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "kept:" in out
    assert "need keras_bn" not in out


def test_convert_to_stock_layers_with_nothing_kept_has_no_note(tmp_path, capsys):
    """Every keras_bn layer swapped for the stock one: nothing kept, so no
    note that kept layers need keras_bn."""
    inputs = keras.Input((3,))
    outputs = keras_bn.BatchNormalization((3,), name="bn")(inputs)
    source, new = tmp_path / "in.keras", tmp_path / "new.keras"
    keras.Model(inputs, outputs).save(source)
    argv = ["convert", str(source), str(new), "--batch-normalization", "keras"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"converted:     {source} (a Keras 3 .keras file)",
        "swapped:",
        "  bn: now keras.layers.BatchNormalization",
        "kept:",
        "  none",
        f"wrote:         {new}",
    ]


def test_convert_reports_what_it_rebuilt_converted_and_assumed(tmp_path, capsys):
    """The whole report of an architecture and weights pair (Keras 1.0.8 on
    Theano: a variance, the release's default epsilon 1e-5, which the JSON
    records as the layers' own)."""
    directory = REAL / "keras-1.0.8-theano"
    old, weights = directory / "dense.json", directory / "dense.weights.h5"
    new = tmp_path / "dense.keras"
    assert main(["convert", str(old), str(new), "--weights", str(weights)]) == 0
    bn = (
        "BatchNormalization(epsilon=1e-05, momentum=0.99, center=True, "
        "scale=True, mode=0, axis=-1)"
    )
    assert capsys.readouterr().out.splitlines() == [
        f"converted:     {old} with weights {weights}",
        "layers:",
        "  dense_1: Dense -> Dense(units=8, activation='linear', use_bias=True)",
        f"  batchnormalization_2: BatchNormalization -> {bn}",
        "  activation_1: Activation -> Activation(activation='relu')",
        "  dense_2: Dense -> Dense(units=3, activation='linear', use_bias=True)",
        f"  batchnormalization_3: BatchNormalization -> {bn}",
        "conversions:",
        "  BatchNormalization fourth array: variance, (x - mean) / sqrt(variance "
        "+ epsilon); converted to each target layer's form and epsilon",
        "  convolution kernels: transposed from the channels-first layout "
        "(dim_ordering 'th': filters, channels, rows, cols) where the config or "
        "the shapes say so, else as stored ('tf'); flipped in every spatial axis "
        "(Theano computed a true convolution)",
        "assumptions:",
        "  load_weights options from the architecture: {'keras_version': "
        "'1.0.8', 'epsilon': {'batchnormalization_2': 1e-05, "
        "'batchnormalization_3': 1e-05}}",
        "  initializers, regularizers, constraints and dropout rates only matter "
        "for training: dropped or kept as is",
        f"wrote:         {new}",
    ]


def test_inspect_s_table_lines_end_without_spaces(capsys):
    path = REAL / "keras-1.0.8-theano" / "dense.weights.h5"
    assert main(["inspect", str(path)]) == 0
    table = capsys.readouterr().out.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["layer", "array", "shape", "dtype"]
    assert "activation_1          (no weights)" in table
    for line in table:
        assert line == line.rstrip()
        if "(no weights)" not in line and line != table[0]:
            assert line.split()[-1] == "float32"


_VARIANCE = "variance, (x - mean) / sqrt(variance + epsilon)"
_KERAS1_SAMPLEWISE = (
    "(x - mean) / (sqrt(var + epsilon) + epsilon), var = x.var(axis=-1) "
    "(keras_bn: samplewise_epsilon_in_root=True)"
)


@pytest.mark.parametrize(
    "path, header",
    [
        ("keras-1.2.2-theano/conv2d_cf.model.h5", [
            "format:        Keras 1.x (layer_names), whole model",
            "Keras version: 1.2.2",
            "backend:       theano",
            f"BatchNormalization fourth array: {_VARIANCE}",
            "  batchnormalization_8: epsilon 0.001 from its config, mode 0",
            "convolution kernels:",
            "  convolution2d_1 convolution2d_1_W: channels-first (dim_ordering "
            "'th'), transposed to Keras 3's layout; flipped in its spatial axes "
            "(Theano computed a true convolution)",
        ]),
        ("keras-0.3.3-theano/conv1d.weights.h5", [
            "format:        Keras 0.x Sequential (nb_layers)",
            "Keras version: not recorded",
            "backend:       not recorded",
            "BatchNormalization fourth array: standard deviation, (x - mean) / "
            "(running_std + epsilon)",
            "BatchNormalization epsilon: the release's default 1e-06 (the file "
            "records no epsilon)",
            "mode 1 (samplewise), where a layer used it: (x - mean) / (std + "
            "epsilon), std = x.std(axis=-1)",
            "convolution kernels:",
            "  layer_0 param_0: layout not recorded: channels-first or -last as "
            "the model's shapes tell (else pass --dim-ordering); backend not "
            "recorded: flipped only with --backend theano",
        ]),
        ("keras-2.2.4-tensorflow/dense_eps.model.h5", [
            "format:        Keras 2.x or later (layer_names), whole model",
            "Keras version: 2.2.4",
            "backend:       tensorflow",
            f"BatchNormalization fourth array: {_VARIANCE}",
            "  batch_normalization_4: epsilon 0.01 from its config, mode 0",
            "  batch_normalization_5: epsilon 0.01 from its config, mode 0",
            "convolution kernels: none",
        ]),
        ("keras-1.0.7-theano/dense_mode1.model.h5", [
            "format:        Keras 1.x (layer_names), whole model",
            "Keras version: 1.0.7",
            "backend:       theano",
            "BatchNormalization fourth array: variance, (x - mean) / "
            "(sqrt(variance) + epsilon)",
            "  batchnormalization_6: epsilon 0.1 from its config, mode 1",
            f"mode 1 (samplewise): {_KERAS1_SAMPLEWISE}",
            "convolution kernels: none",
        ]),
        ("keras-2.2.4-tensorflow/conv2d_cl.weights.h5", [
            "format:        Keras 2.x or later (layer_names)",
            "Keras version: 2.2.4",
            "backend:       tensorflow",
            f"BatchNormalization fourth array: {_VARIANCE}",
            "BatchNormalization epsilon: the release's default 0.001 (the file "
            "records no epsilon)",
            "convolution kernels:",
            "  conv2d_2 conv2d_2/kernel:0: Keras 3's layout, kept; not flipped "
            "(tensorflow computed a cross-correlation, as Keras 3)",
        ]),
    ],
)  # fmt: skip
def test_inspect_s_whole_header(capsys, path, header):
    """Everything above the table, line for line: each release's meaning of
    its arrays as docs/legacy.md states it."""
    path = REAL / path
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.split("\n\n", 1)[0].splitlines()
    assert lines == [f"file:          {path}", *header]


ZOO = REAL.parent / "real_zoo"


@pytest.mark.parametrize(
    "path, header",
    [
        (ZOO / "keras-2.2.4-theano/separable1d.weights.h5", [
            "format:        Keras 2.x or later (layer_names)",
            "Keras version: 2.2.4",
            "backend:       theano",
            f"BatchNormalization fourth array: {_VARIANCE}",
            "BatchNormalization epsilon: the release's default 0.001 (the file "
            "records no epsilon)",
            "convolution kernels:",
            "  separable_conv1d_1 separable_conv1d_1/depthwise_kernel: Keras 3's "
            "layout, kept; not flipped (Keras 2's Theano backend reversed "
            "depthwise kernels itself)",
            "  separable_conv1d_1 separable_conv1d_1/pointwise_kernel: Keras 3's "
            "layout, kept; flipped in its spatial axes (Theano computed a true "
            "convolution)",
        ]),
        (REAL / "keras-1.2.2-tensorflow/conv2d_cl.model.h5", [
            "format:        Keras 1.x (layer_names), whole model",
            "Keras version: 1.2.2",
            "backend:       tensorflow",
            f"BatchNormalization fourth array: {_VARIANCE}",
            "  batchnormalization_9: epsilon 0.001 from its config, mode 0",
            "convolution kernels:",
            "  convolution2d_2 convolution2d_2_W:0: channels-last (dim_ordering "
            "'tf'), Keras 3's layout; not flipped (tensorflow computed a "
            "cross-correlation, as Keras 3)",
        ]),
        (REAL / "keras-1.0.6-theano/dense.weights.h5", [
            "format:        Keras 1.x (layer_names)",
            "Keras version: not recorded",
            "backend:       theano",
            "BatchNormalization fourth array: not told by the file: load with "
            'running_std="std" or "variance"',
            f"mode 1 (samplewise), where a layer used it: {_KERAS1_SAMPLEWISE}",
            "convolution kernels: none",
        ]),
    ],
    ids=["theano-separable", "keras1-channels-last", "keras1-version-unknown"],
)  # fmt: skip
def test_inspect_s_header_for_each_kernel_and_unknown_meaning(capsys, path, header):
    """A depthwise kernel of Keras 2 on Theano is not flipped, its pointwise
    one is; a Keras 1 'tf' kernel is kept; a Keras 1.0.6 file without its
    version does not tell what its fourth array is."""
    assert main(["inspect", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.split("\n\n", 1)[0].splitlines() == [f"file:          {path}", *header]


def _with_model_config(tmp_path, edit):
    path = tmp_path / "edited.model.h5"
    shutil.copy(REAL / "keras-2.2.4-tensorflow" / "dense.model.h5", path)
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        batch_norms = [
            layer
            for layer in config["config"]["layers"]
            if layer["class_name"] == "BatchNormalization"
        ]
        edit(batch_norms)
        file.attrs["model_config"] = json.dumps(config)
    return path, [layer["config"]["name"] for layer in batch_norms]


def _without_epsilon(batch_norms):
    for layer in batch_norms:
        del layer["config"]["epsilon"]


def _renamed(batch_norms):
    for layer in batch_norms:
        layer["class_name"] = "Activation"


def test_inspect_says_a_layer_s_epsilon_is_the_release_s_default(tmp_path, capsys):
    """A whole-model file whose Batch Normalization configs lack epsilon:
    each layer gets Keras 2's default, 1e-3, said as not recorded."""
    path, names = _with_model_config(tmp_path, _without_epsilon)
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[4:7] == [
        f"BatchNormalization fourth array: {_VARIANCE}",
        *(
            f"  {name}: epsilon not recorded: the release's default 0.001, mode 0"
            for name in names
        ),
    ]


def test_inspect_of_a_model_config_without_batch_normalizations(tmp_path, capsys):
    """The config records the layers but none is a Batch Normalization: the
    release's default epsilon, without saying that the file records none."""
    path, _ = _with_model_config(tmp_path, _renamed)
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[4:7] == [
        f"BatchNormalization fourth array: {_VARIANCE}",
        "BatchNormalization epsilon: the release's default 0.001",
        "convolution kernels: none",
    ]


def _refused_convert(capsys, argv):
    assert main(["convert", *argv]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    return err


@pytest.mark.parametrize(
    "option",
    [["--weights", "w.h5"], ["--backend", "theano"], ["--keras-version", "1.0.8"],
     ["--channels-first", "transpose"], ["--dim-ordering", "tf"]],
    ids=lambda option: option[0],
)  # fmt: skip
def test_each_old_file_option_is_refused_for_a_keras_file_in_one_line(
    tmp_path, capsys, option
):
    """Even an option's default value (--channels-first transpose) given for a
    .keras file is refused, naming the option and the file."""
    source = tmp_path / "in.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(source)
    new = tmp_path / "new.keras"
    err = _refused_convert(capsys, [str(source), str(new), *option])
    assert err == (
        f"keras-bn: error: {source}: {option[0]} is for old Keras files (HDF5, "
        "JSON, YAML); a .keras file records all it needs.\n"
    )
    assert not new.exists()


def test_convert_s_refusals_of_the_output_in_one_line(tmp_path, capsys):
    """The output that is the input, that exists, or is not named .keras:
    each its own line on stderr, exit 1, nothing on stdout."""
    old = str(REAL / "keras-2.2.4-tensorflow" / "dense.model.h5")
    err = _refused_convert(capsys, [old, old])
    assert err == (
        f"keras-bn: error: {old}: the output is one of the files read: choose "
        "another name.\n"
    )
    existing = tmp_path / "there.keras"
    existing.write_bytes(b"mine")
    err = _refused_convert(capsys, [old, str(existing)])
    assert err == (
        f"keras-bn: error: {existing}: the output exists: pass --overwrite to "
        "replace it.\n"
    )
    named = tmp_path / "model.h5"
    err = _refused_convert(capsys, [old, str(named)])
    assert err == (
        f"keras-bn: error: {named}: expected an output name ending in .keras, "
        f"got '{named}'.\n"
    )
    assert os.listdir(tmp_path) == ["there.keras"]


def test_convert_of_a_whole_model_file_names_no_weights(tmp_path, capsys):
    old = REAL / "keras-2.2.4-tensorflow" / "dense.model.h5"
    new = tmp_path / "dense.keras"
    assert main(["convert", str(old), str(new)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == ""
    assert lines[0] == f"converted:     {old}"
    assert lines[1] == "layers:" and lines[-1] == f"wrote:         {new}"


def test_convert_of_a_keras_file_without_batch_normalization(tmp_path, capsys):
    """Nothing to swap and nothing kept: both lists say none, and no note."""
    source, new = tmp_path / "in.keras", tmp_path / "new.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(source)
    argv = ["convert", str(source), str(new), "--batch-normalization", "keras"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"converted:     {source} (a Keras 3 .keras file)",
        "swapped:",
        "  none",
        "kept:",
        "  none",
        f"wrote:         {new}",
    ]


def test_inspect_tells_a_wrapped_batch_normalization_s_epsilon(tmp_path, capsys, rng):
    """A TimeDistributed(BatchNormalization) of a whole-model file: its
    wrapped layer's epsilon from the config, not the release's default."""
    from legacy_fixtures import write_wrapped_batch_norm

    write_wrapped_batch_norm(tmp_path, rng, epsilon=0.1)
    assert main(["inspect", str(tmp_path / "td.model.h5")]) == 0
    out = capsys.readouterr().out
    assert "  bn: epsilon 0.1 from its config, mode 0" in out.splitlines()
    assert "the release's default" not in out
