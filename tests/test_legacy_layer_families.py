"""Every family of old layers, on files the real releases wrote.

``tests/fixtures/real_zoo/<release>-<backend>/`` holds, per layer family,
a small Sequential model (BatchNormalization, then the layer under test)
that the release built, trained a few steps and saved, with its own
predictions (``scripts/real_fixtures/zoo.py``; the recipe is in
``scripts/real_fixtures/README.md``). Each architecture and weights pair
is rebuilt with `keras_bn.legacy.load_model` into keras_bn's layer, each
whole-model file into the stock layer, and must predict what the release
predicted within 1e-4 of the output's scale: kernel layouts, Theano's flip,
per-gate recurrent arrays, channels-first data and old argument names all
show in that one number.
"""

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import release_param

from keras_bn import legacy
from keras_bn.cli import main
from keras_bn.legacy import layers_map
from keras_bn.legacy.architecture import Node

ROOT = Path(__file__).resolve().parent / "fixtures" / "real_zoo"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "legacy_models.md"


def _manifests():
    return [
        (directory, json.loads((directory / "manifest.json").read_text()))
        for directory in sorted(ROOT.iterdir())
        if (directory / "manifest.json").exists()
    ]


MODELS = [
    release_param(
        directory.name,
        directory,
        manifest,
        entry,
        id=f"{directory.name}-{entry['name']}",
    )
    for directory, manifest in _manifests()
    for entry in manifest["models"]
]


def _options(manifest):
    """What a Keras 1.x file does not record: the image layout of its
    UpSampling, ZeroPadding and Cropping layers (keras.json's)."""
    if manifest["release"].startswith("1."):
        return {"dim_ordering": "th" if manifest["channels_first"] else "tf"}
    return {}


def _close(model, arrays):
    """The largest error relative to the output's scale; several inputs are
    stacked on the first axis of ``x``."""
    x = arrays["x"]
    x = list(x) if len(model.inputs) > 1 else x
    got = model.predict(x, batch_size=arrays["y"].shape[0], verbose=0)
    expected = arrays["y"]
    assert got.shape == expected.shape
    scale = max(float(np.max(np.abs(expected))), 1e-6)
    return float(np.max(np.abs(got - expected))) / scale


def _load(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the assumed-epsilon warnings
        return legacy.load_model(path, **kwargs)


def test_every_release_and_many_families():
    manifests = _manifests()
    assert {m["release"] for _, m in manifests} >= {"1.2.2", "2.2.4", "tf-keras-2.21"}
    assert {m["backend"] for _, m in manifests} == {"theano", "tensorflow"}
    assert len(MODELS) >= 300


@pytest.mark.parametrize("directory, manifest, entry", MODELS)
def test_predictions_match_the_release(directory, manifest, entry):
    files = entry["files"]
    arrays = np.load(directory / files["npz"])
    options = _options(manifest)
    model = _load(
        directory / files["json"], weights=directory / files["weights"], **options
    )
    assert _close(model, arrays) <= 1e-4
    if files.get("model"):
        model = _load(
            directory / files["model"], batch_normalization="keras", **options
        )
        assert _close(model, arrays) <= 1e-4


def _entry(directory_name, model_name):
    directory = ROOT / directory_name
    manifest = json.loads((directory / "manifest.json").read_text())
    (entry,) = [e for e in manifest["models"] if e["name"] == model_name]
    return directory, manifest, entry


@pytest.mark.parametrize("name", ["upsampling2d", "cropping3d", "zeropadding2d"])
def test_a_keras1_layer_without_its_dim_ordering_needs_it(name):
    """Keras 1.x did not record these layers' ordering: without one from the
    caller or another layer, the model is refused by name; the wrong one
    gives other shapes, refused or off."""
    directory, manifest, entry = _entry("keras-1.2.2-theano", name)
    json_path, weights = directory / entry["files"]["json"], directory / entry[
        "files"
    ]["weights"]  # fmt: skip
    with pytest.raises(legacy.LegacyFileError, match="dim_ordering") as caught:
        _load(json_path, weights=weights)
    assert caught.value.field == "dim_ordering"
    assert caught.value.layer == entry["classes"][1].lower() + "_1"
    arrays = np.load(directory / entry["files"]["npz"])
    model = _load(json_path, weights=weights, dim_ordering="th")
    assert _close(model, arrays) <= 1e-4
    try:
        model = _load(json_path, weights=weights, dim_ordering="tf")
    except legacy.LegacyFileError:
        return
    assert model.output_shape[1:] != arrays["y"].shape[1:]


@pytest.mark.parametrize("recorded", ["th", "tf"])
def test_the_model_s_other_layers_tell_the_ordering(tmp_path, recorded):
    """A Keras 1 UpSampling2D in a model whose other layer records its
    dim_ordering (here a 1x1 max pooling, an identity) follows it."""
    directory, manifest, entry = _entry("keras-1.2.2-theano", "upsampling2d")
    config = json.loads((directory / entry["files"]["json"]).read_text())
    pool = {"name": "identity", "pool_size": [1, 1], "strides": [1, 1],
            "border_mode": "valid", "dim_ordering": recorded}  # fmt: skip
    config["config"].insert(1, {"class_name": "MaxPooling2D", "config": pool})
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    arrays = np.load(directory / entry["files"]["npz"])
    model = _load(path, weights=directory / entry["files"]["weights"])
    if recorded == "th":
        assert _close(model, arrays) <= 1e-4
    else:
        assert model.output_shape[1:] != arrays["y"].shape[1:]


def test_keras1_tensorflow_names_with_a_suffix():
    """Keras 1.x on TensorFlow suffixed a variable name that an earlier
    model of the session used (named_W_1:0, norm_gamma_1:0); the file, and
    json.dump(model.to_json()) of it, load."""
    directory, manifest, entry = _entry("keras-1.2.2-tensorflow", "suffixed_names")
    names = [w for g in entry["stored"]["groups"] for w, _ in g["weights"]]
    assert "norm_gamma_1:0" in names and "named_W_1:0" in names
    arrays = np.load(directory / entry["files"]["npz"])
    weights = directory / entry["files"]["weights"]
    with pytest.warns(UserWarning, match="JSON string"):
        model = legacy.load_model(
            directory / entry["files"]["double_json"], weights=weights,
            dim_ordering="tf",
        )  # fmt: skip
    assert _close(model, arrays) <= 1e-4


def test_old_hard_sigmoid_is_not_keras_3_s():
    """Keras 1/2's hard_sigmoid is clip(0.2 x + 0.5); Keras 3's has slope
    1/6: the rebuilt Dense computes the old one, and a saved .keras file
    keeps it."""
    directory, manifest, entry = _entry("keras-2.2.4-tensorflow", "hard_sigmoid")
    arrays = np.load(directory / entry["files"]["npz"])
    model = _load(directory / entry["files"]["model"])
    x = np.linspace(-4, 4, 17, dtype="float32")[:, None]
    activation = model.layers[-1].activation
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(activation(x)), np.clip(0.2 * x + 0.5, 0, 1)
    )
    assert _close(model, arrays) <= 1e-4


def test_a_rebuilt_recurrent_model_saves_and_loads(tmp_path):
    """The old hard_sigmoid is registered: a .keras file of a Keras 1 LSTM
    loads back in a fresh process and predicts what the release did."""
    directory, manifest, entry = _entry("keras-1.2.2-tensorflow", "lstm")
    model = _load(
        directory / entry["files"]["json"],
        weights=directory / entry["files"]["weights"],
    )
    path = tmp_path / "lstm.keras"
    model.save(path)
    script = (
        "import sys, numpy as np, keras, keras_bn\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "a = np.load(sys.argv[2])\n"
        "y = m.predict(a['x'], verbose=0)\n"
        "print(float(np.max(np.abs(y - a['y'])) / np.max(np.abs(a['y']))))\n"
    )
    npz = directory / entry["files"]["npz"]
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), str(npz)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) <= 1e-4


@pytest.mark.parametrize(
    "directory_name, name",
    [("keras-1.2.2-theano", "deconv2d"), ("keras-1.2.2-tensorflow", "bidirectional"),
     ("keras-2.2.4-tensorflow", "separable2d")],
)  # fmt: skip
def test_keras_bn_convert(tmp_path, capsys, directory_name, name):
    directory, manifest, entry = _entry(directory_name, name)
    out = tmp_path / f"{name}.keras"
    argv = ["convert", str(directory / entry["files"]["json"]), str(out),
            "--weights", str(directory / entry["files"]["weights"])]  # fmt: skip
    if manifest["release"].startswith("1."):
        argv += ["--dim-ordering", _options(manifest)["dim_ordering"]]
    assert main(argv) == 0, capsys.readouterr().err
    model = keras.saving.load_model(out)
    assert _close(model, np.load(directory / entry["files"]["npz"])) <= 1e-4


def _documented_names(text):
    """The backticked names of the docs, ``MaxPooling1D/2D/3D`` read as
    three names."""
    names = set()
    for token in re.findall(r"`([A-Za-z0-9/]+)(?:\([^`]*\))?`", text):
        first, *others = token.split("/")
        names.add(first)
        stem = re.sub(r"[0-9]D$", "", first)
        names.update(stem + other for other in others)
    return names


def test_every_registered_class_is_in_the_docs_table():
    """docs/legacy_models.md's table names every old class the loader
    translates."""
    documented = _documented_names(DOCS.read_text())
    assert sorted(set(layers_map._TRANSLATORS) - documented) == []


@pytest.mark.parametrize(
    "class_name", ["Highway", "MaxoutDense", "LocallyConnected1D", "LocallyConnected2D"]
)
def test_layers_without_a_keras_3_equivalent_are_refused_by_name(tmp_path, class_name):
    directory, manifest, entry = _entry("keras-1.2.2-tensorflow", "leakyrelu")
    config = json.loads((directory / entry["files"]["json"]).read_text())
    config["config"][1]["class_name"] = class_name
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    with pytest.raises(legacy.LegacyFileError, match=class_name) as caught:
        _load(path, weights=directory / entry["files"]["weights"])
    assert caught.value.field == "class_name"


@pytest.mark.parametrize("directory_name", ["keras-1.2.2-theano", "keras-2.2.4-theano"])
def test_theano_s_shifted_same_padding_is_refused(tmp_path, directory_name):
    """Theano's "same" with an even kernel size (here 3x2) was its "half"
    convolution cropped at the end: shifted from Keras 3's, refused by name.
    The same edit of a TensorFlow file loads."""
    for name in (directory_name, directory_name.replace("theano", "tensorflow")):
        directory, manifest, entry = _entry(name, "conv2d_rect")
        config = json.loads((directory / entry["files"]["json"]).read_text())
        settings = config["config"]
        layers = settings["layers"] if isinstance(settings, dict) else settings
        conv = layers[1]["config"]
        conv["border_mode" if "border_mode" in conv else "padding"] = "same"
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        weights = directory / entry["files"]["weights"]
        if "theano" in name:
            with pytest.raises(legacy.LegacyFileError, match="Theano") as caught:
                _load(path, weights=weights, **_options(manifest))
            assert caught.value.field == "padding"
        else:
            assert _load(path, weights=weights, **_options(manifest)).built


def _translated(class_name, config, generation=2, dim_ordering=None):
    node = Node("x", class_name, dict(config, name="x"), [])
    plan = layers_map.translate(node, generation, "keras_bn", dim_ordering)
    assert plan.problems == []
    return plan.kwargs


@pytest.mark.parametrize(
    "class_name, config, generation, key, expected",
    [
        # The old releases' defaults, where a file leaves the argument out.
        ("Convolution2D", {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                           "dim_ordering": "th"}, 1, "padding", "valid"),
        ("MaxPooling2D", {"pool_size": [2, 2], "dim_ordering": "tf"}, 1, "padding",
         "valid"),
        ("Conv2D", {"filters": 2, "kernel_size": [3, 3]}, 2, "data_format",
         "channels_last"),
        ("UpSampling2D", {"size": [2, 2]}, 2, "data_format", "channels_last"),
        ("Convolution2D", {"nb_filter": 2, "nb_row": 3, "nb_col": 3}, 0,
         "data_format", "channels_first"),
        ("LeakyReLU", {}, 1, "negative_slope", 0.3),
        ("ThresholdedReLU", {}, 1, "threshold", 1.0),
        ("Merge", {}, 1, "mode", None),
        ("LSTM", {"output_dim": 3}, 1, "recurrent_activation", "legacy"),
        ("GRU", {"units": 3}, 2, "reset_after", False),
        ("BatchNormalization", {}, 1, "epsilon", 1e-6),
        ("BatchNormalization", {}, 2, "epsilon", 1e-3),
    ],
)  # fmt: skip
def test_the_old_defaults(class_name, config, generation, key, expected):
    kwargs = _translated(class_name, config, generation)
    if key == "mode":  # Keras 1's Merge defaulted to sum
        node = Node("x", class_name, dict(config, name="x"), [])
        plan = layers_map.translate(node, generation, "keras_bn")
        assert plan.cls is keras.layers.Add
        return
    if expected == "legacy":
        x = np.linspace(-4, 4, 9, dtype="float32")
        got = keras.ops.convert_to_numpy(kwargs[key](x))
        np.testing.assert_allclose(got, np.clip(0.2 * x + 0.5, 0, 1))
        return
    assert kwargs[key] == expected


@pytest.mark.parametrize("value", [2, "x", [1, 2]])
def test_an_argument_no_translator_knows_is_refused_by_name(tmp_path, value):
    """A layer argument the old releases did not have (or a damaged file's)
    is never dropped in silence: the model is refused, naming it."""
    directory, manifest, entry = _entry("keras-2.2.4-tensorflow", "conv2d_rect")
    config = json.loads((directory / entry["files"]["json"]).read_text())
    layers = config["config"]
    layers = layers["layers"] if isinstance(layers, dict) else layers
    (convolution,) = [layer for layer in layers if layer["class_name"] == "Conv2D"]
    convolution["config"]["frobnication"] = value
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    with pytest.raises(legacy.LegacyFileError, match="frobnication") as caught:
        _load(path, weights=directory / entry["files"]["weights"])
    assert caught.value.field == "frobnication"
    assert "not supported" in str(caught.value)


@pytest.mark.parametrize(
    "mode, meaning", [(1, "samplewise"), (2, "batch statistics at inference")]
)
def test_a_mode_the_stock_layer_cannot_compute_is_refused_by_name(mode, meaning):
    """Keras 1.x's modes 1 and 2 have no stock Keras 3 equivalent: rebuilt
    with the stock layer, such a model is refused, naming ``mode`` and what
    to pass instead; keras_bn's layer rebuilds it and predicts what Keras
    1.2.2 did."""
    directory = Path(__file__).resolve().parent / "fixtures" / "real"
    directory = directory / "keras-1.2.2-theano"
    path = directory / f"dense_mode{mode}.model.h5"
    with pytest.raises(legacy.LegacyFileError, match=meaning) as caught:
        _load(path, batch_normalization="keras")
    assert caught.value.field == "mode"
    assert "batch_normalization='keras_bn'" in str(caught.value)
    arrays = np.load(directory / f"dense_mode{mode}.npz")
    assert _close(_load(path), arrays) <= 1e-4


def test_bidirectional_merges_by_concatenation_unless_told():
    """Keras' Bidirectional concatenates the two directions by default; a
    config that records no merge_mode gets that."""
    layer = {"class_name": "LSTM", "config": {"units": 3, "name": "inner"}}
    assert _translated("Bidirectional", {"layer": layer})["merge_mode"] == "concat"
    told = _translated("Bidirectional", {"layer": layer, "merge_mode": "ave"})
    assert told["merge_mode"] == "ave"


def test_a_model_recording_both_orderings_needs_dim_ordering(tmp_path):
    """A Keras 1 model whose layers record 'th' and 'tf' tells nothing for a
    layer that records none: refused by name unless dim_ordering is given."""
    directory, manifest, entry = _entry("keras-1.2.2-theano", "upsampling2d")
    config = json.loads((directory / entry["files"]["json"]).read_text())
    for index, ordering in ((1, "th"), (2, "tf")):
        pool = {"name": f"identity_{ordering}", "pool_size": [1, 1], "strides": [1, 1],
                "border_mode": "valid", "dim_ordering": ordering}  # fmt: skip
        config["config"].insert(index, {"class_name": "MaxPooling2D", "config": pool})
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    with pytest.raises(legacy.LegacyFileError, match="dim_ordering") as caught:
        _load(path, weights=directory / entry["files"]["weights"])
    assert caught.value.field == "dim_ordering"


def test_a_deconvolution_s_declared_output_shape_is_checked(tmp_path):
    """Keras 1's Deconvolution2D declared its output_shape: one that Keras
    3's Conv2DTranspose does not compute is refused by name."""
    directory, manifest, entry = _entry("keras-1.2.2-theano", "deconv2d")
    config = json.loads((directory / entry["files"]["json"]).read_text())
    deconv = config["config"][1]["config"]
    assert deconv["output_shape"][2] == 15
    deconv["output_shape"][2] = 16
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    with pytest.raises(legacy.LegacyFileError, match="output shape") as caught:
        _load(path, weights=directory / entry["files"]["weights"], dim_ordering="th")
    assert caught.value.layer == deconv["name"]


def test_a_sequence_of_any_length(tmp_path):
    """A recurrent model declared for sequences of any length
    (batch_input_shape [None, None, 4]) is rebuilt so, and predicts what
    the release did on the fixture's length."""
    directory, manifest, entry = _entry("keras-2.2.4-tensorflow", "lstm")
    config = json.loads((directory / entry["files"]["json"]).read_text())
    first = config["config"]["layers"][0]["config"]
    assert first["batch_input_shape"] == [None, 5, 4]
    first["batch_input_shape"] = [None, None, 4]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    model = _load(path, weights=directory / entry["files"]["weights"])
    assert model.input_shape == (None, None, 4)
    assert _close(model, np.load(directory / entry["files"]["npz"])) <= 1e-4


REAL = ROOT.parent / "real"
CHANNELS_FIRST = [
    pytest.param(
        directory / f"{entry['name']}.model.h5", id=f"{directory.name}-{entry['name']}"
    )
    for directory, manifest in _manifests()
    if manifest["channels_first"]
    for entry in manifest["models"]
    if re.search(r"conv|pool|global|separable|depthwise|deconv|atrous", entry["name"])
] + [
    # Keras 1.x's channels-first convolution nets, with their MaxPooling2D.
    pytest.param(path, id=f"{path.parent.name}-{path.stem}")
    for path in sorted(REAL.glob("keras-1.*/conv2d_cf.model.h5"))
]


@pytest.mark.parametrize("path", CHANNELS_FIRST)
def test_transposed_models_hold_no_channels_first_layer(path):
    """channels_first="transpose" (what keras-bn convert writes) runs every
    channels-first layer channels-last between Permutes, so that the model
    runs on every backend: no layer of it computes channels-first."""
    model = _load(path, channels_first="transpose")

    def layers(model):
        for layer in model.layers:
            yield layer
            if isinstance(layer, keras.Model):
                yield from layers(layer)
            inner = getattr(layer, "layer", None)  # a wrapper's
            if inner is not None:
                yield inner

    first = [
        layer.name
        for layer in layers(model)
        if getattr(layer, "data_format", None) == "channels_first"
        # A global pooling is a reduction over the spatial axes, which every
        # backend computes channels-first as well.
        and not type(layer).__name__.startswith("Global")
    ]
    assert first == []


def test_a_dilated_separable_convolution_is_refused(tmp_path):
    """Keras 2's separable convolutions with a dilation rate are refused by
    name (`layers_map`: Keras 3 has no equivalent checked against a
    release)."""
    source = ROOT / "keras-2.2.4-tensorflow" / "separable2d.json"
    config = json.loads(source.read_text())
    (layer,) = [
        layer for layer in config["config"]["layers"]
        if layer["class_name"] == "SeparableConv2D"
    ]  # fmt: skip
    layer["config"]["dilation_rate"] = [2, 2]
    path = tmp_path / "dilated.json"
    path.write_text(json.dumps(config))
    weights = ROOT / "keras-2.2.4-tensorflow" / "separable2d.weights.h5"
    with pytest.raises(legacy.LegacyFileError) as raised:
        _load(path, weights=weights)
    assert raised.value.field == "dilation_rate"


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="TensorFlow's CPU has no channels-first ConvLSTM2D to compare with",
)
@pytest.mark.parametrize("sequences", [False, True])
def test_a_channels_first_conv_lstm_between_permutes(tmp_path, sequences):
    """Keras 2.2.4's Theano ConvLSTM2D (channels-first), with and without
    return_sequences, rows and columns of different sizes: run
    channels-last between Permutes, it computes what Keras 3's own
    channels-first layer computes with the same weights."""
    directory = ROOT / "keras-2.2.4-theano"
    config = json.loads((directory / "convlstm2d.json").read_text())
    (layer,) = [
        layer for layer in config["config"]["layers"]
        if layer["class_name"] == "ConvLSTM2D"
    ]  # fmt: skip
    layer["config"]["return_sequences"] = sequences
    path = tmp_path / "last_step.json"
    path.write_text(json.dumps(config))
    weights = directory / "convlstm2d.weights.h5"
    x = np.load(directory / "convlstm2d.npz")["x"]
    assert x.shape[-2] != x.shape[-1]  # rows != cols: a swap would show
    transposed = _load(path, weights=weights, channels_first="transpose")
    native = _load(path, weights=weights, channels_first="native")
    got = transposed.predict(x, verbose=0)
    expected = native.predict(x, verbose=0)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_keras1_conv_lstm_takes_its_strides_from_subsample():
    """Keras 1's ConvLSTM2D named its strides ``subsample``, as its
    convolutions did."""
    config = {"nb_filter": 2, "nb_row": 3, "nb_col": 3, "dim_ordering": "tf",
              "subsample": [2, 1]}  # fmt: skip
    assert tuple(_translated("ConvLSTM2D", config, 1)["strides"]) == (2, 1)
