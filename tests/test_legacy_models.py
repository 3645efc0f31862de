"""keras_bn.legacy.load_model on the files the real old Keras releases wrote.

Every fixture (every release, every model kind) is rebuilt as a Keras 3 model
from one of its files and must predict what the release itself predicted (the
npz ``y``), within 1e-4 of the output's scale. Not every file form x target x
release: each fixture once from its whole-model file (Keras 1.0.7 on) or its
JSON; JSON + weights for one more model of every release that has whole-model
files; YAML + weights for a few releases (0.x, 1.0.5, 1.2.2 with its numpy
scalar tags, 2.2.4); the stock layer (``batch_normalization="keras"``) for
every model of one release per family, and refused, naming the layer,
wherever it cannot compute the same (tests/real_fixtures.py's ``supports``).
"""

import json
import warnings

import keras
import numpy as np
import pytest
import real_fixtures as rf
from conftest import release_param, to_numpy
from legacy_fixtures import write_wrapped_batch_norm

from keras_bn import legacy

FIXTURES = rf.fixtures()


def _no_statistics(fixture):
    """A Keras 0.x Graph before 0.3.0 saved gamma and beta only."""
    return fixture.release.startswith("0.2") and fixture.name == "graph"


# Releases whose every model is also rebuilt with the stock layer: one per
# family (std up to 1.0.5, 1.0.6 by backend, variance from 1.0.7, Keras 2).
STOCK = {"keras-0.3.3-theano", "keras-1.0.6-theano", "keras-1.2.2-tensorflow",
         "keras-2.2.4-tensorflow"}  # fmt: skip
# One model per release rebuilt from YAML, and the target it gets (1.2.2's
# convolutions carry numpy scalar tags).
YAML = {
    "keras-0.2.0-theano": ("dense_eps", "keras_bn"),
    "keras-0.3.3-theano": ("conv2d_cf", "keras_bn"),
    "keras-1.0.5-theano": ("functional", "keras"),
    "keras-1.2.2-tensorflow": ("conv2d_cl", "keras"),
    "keras-1.2.2-theano": ("conv2d_cf", "keras_bn"),
    "keras-2.2.4-tensorflow": ("functional", "keras_bn"),
}
# Which model of the n-th release is also rebuilt from JSON.
ROTATION = ("conv2d_cf", "functional", "conv1d", "dense_eps", "conv2d_cl", "dense")


def _pick(fixtures, index, kind):
    usable = [f for f in fixtures if f.has(kind) and not _no_statistics(f)]
    names = {f.name: f for f in usable}
    for offset in range(len(ROTATION)):
        name = ROTATION[(index + offset) % len(ROTATION)]
        if name in names and rf.supports(names[name], "keras_bn")[0]:
            return names[name]
    return None


def _cases():
    by_release = {}
    for fixture in FIXTURES:
        if not _no_statistics(fixture):
            by_release.setdefault(fixture.directory.name, []).append(fixture)
    cases = []
    for index, (release, fixtures) in enumerate(sorted(by_release.items())):
        for fixture in fixtures:
            form = "model" if fixture.has("model") else "json"
            cases.append((fixture, form, "keras_bn"))
            if release in STOCK or not rf.supports(fixture, "keras")[0]:
                cases.append((fixture, form, "keras"))
        if fixtures[0].has("model"):
            cases.append((_pick(fixtures, index, "json"), "json", "keras_bn"))
        if release in YAML:
            name, target = YAML[release]
            (fixture,) = [f for f in fixtures if f.name == name]
            cases.append((fixture, "yaml", target))
    return [
        release_param(f.directory.name, f, form, target, id=f"{f.id}-{form}-{target}")
        for f, form, target in cases
    ]


CASES = _cases()


def _kwargs(fixture, kind):
    kwargs = {} if kind == "model" else {"weights": fixture.path("weights")}
    if fixture.release.startswith("0."):
        kwargs["backend"] = fixture.backend  # Keras 0.x files do not record it
    return kwargs


def test_every_release_model_kind_and_form_is_covered():
    values = [c.values for c in CASES]
    assert {f.directory.name for f, _, _ in values} == {
        d.name for d in rf.release_dirs()
    }
    built = {f.id for f, _, _ in values}
    assert built == {f.id for f in FIXTURES if not _no_statistics(f)}
    assert {f.entry["kind"] for f, _, _ in values} == {
        "sequential", "functional", "graph"
    }  # fmt: skip
    with_json = {f.directory.name for f, form, _ in values if form == "json"}
    assert with_json == {d.name for d in rf.release_dirs()}
    with_model = {f.directory.name for f, form, _ in values if form == "model"}
    assert with_model == {f.directory.name for f in FIXTURES if f.has("model")}
    assert {f.directory.name for f, form, _ in values if form == "yaml"} == set(YAML)
    stock = {f.name for f, _, t in values if t == "keras" and rf.supports(f, t)[0]}
    assert stock >= set(ROTATION) | {"functional", "graph"}


@pytest.mark.parametrize("fixture, kind, target", CASES)
def test_rebuilt_model_predicts_what_the_release_did(fixture, kind, target):
    if kind == "yaml":
        pytest.importorskip("yaml", reason="YAML architectures need the yaml extra")
    supported, why = rf.supports(fixture, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not supported:
            with pytest.raises(legacy.LegacyFileError) as error:
                legacy.load_model(
                    fixture.path(kind), batch_normalization=target,
                    **_kwargs(fixture, kind),
                )  # fmt: skip
            assert "BatchNormalization" in str(error.value)
            return
        model = legacy.load_model(
            fixture.path(kind), batch_normalization=target, **_kwargs(fixture, kind)
        )
    x, y = rf.load_arrays(fixture)
    predicted = np.asarray(model.predict(x, batch_size=len(x), verbose=0))
    scale = max(1.0, float(np.max(np.abs(y))))
    assert predicted.shape == y.shape
    np.testing.assert_allclose(predicted, y, rtol=0, atol=1e-4 * scale)


def test_a_gamma_beta_only_graph_warns():
    (fixture,) = [f for f in FIXTURES if _no_statistics(f)]
    with pytest.warns(UserWarning, match="gamma and beta"):
        legacy.load_model(fixture.path("json"), **_kwargs(fixture, "json"))


# -- bad input -------------------------------------------------------------------


def _fixture(release, name):
    return next(f for f in FIXTURES if f.id == f"{release}/{name}")


def _edited(tmp_path, fixture, edit):
    config = json.loads(fixture.path("json").read_text())
    edit(config)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(config))
    return path


def test_unknown_layers_and_arguments_are_all_listed(tmp_path):
    fixture = _fixture("keras-1.0.8-theano", "conv2d_cf")

    def edit(config):
        config["config"][2]["class_name"] = "PReLU"
        config["config"][0]["config"]["border_mode"] = "full"
        config["config"][1]["config"]["mode"] = 3

    path = _edited(tmp_path, fixture, edit)
    with pytest.raises(legacy.LegacyFileError) as error:
        legacy.load_model(path, weights=fixture.path("weights"))
    message = str(error.value)
    assert "3 thing(s)" in message
    assert "'activation_5' (PReLU)" in message
    assert "border_mode" in message and "'full'" in message
    assert "mode 3" in message and "batchnormalization_8" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a model config"),
        ('{"class_name": "Sequential", "config": []}', "without layers"),
    ],
)
def test_a_config_that_does_not_parse(tmp_path, text, expected):
    path = tmp_path / "bad.json"
    path.write_text(text)
    weights = _fixture("keras-1.0.8-theano", "dense").path("weights")
    with pytest.raises(legacy.LegacyFileError, match=expected):
        legacy.load_model(path, weights=weights)


def test_yaml_that_would_run_code_is_refused(tmp_path):
    pytest.importorskip("yaml", reason="YAML architectures need the yaml extra")
    path = tmp_path / "evil.yaml"
    path.write_text("class_name: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(legacy.LegacyFileError, match="would run code"):
        legacy.load_model(path, weights=path)


def test_weights_that_do_not_fit():
    fixture = _fixture("keras-1.0.8-theano", "dense")
    other = _fixture("keras-1.0.8-theano", "conv1d")
    with pytest.raises(legacy.LegacyFileError, match="shape|layers with weights"):
        legacy.load_model(fixture.path("json"), weights=other.path("weights"))


def test_a_truncated_file(tmp_path):
    fixture = _fixture("keras-2.2.4-tensorflow", "dense")
    path = tmp_path / "cut.h5"
    path.write_bytes(fixture.path("model").read_bytes()[:3000])
    with pytest.raises(legacy.LegacyFileError):
        legacy.load_model(path)


def test_a_weights_file_alone_is_not_a_model():
    fixture = _fixture("keras-1.0.8-theano", "dense")
    with pytest.raises(legacy.LegacyFileError, match="no architecture"):
        legacy.load_model(fixture.path("weights"))


# -- Keras 1 Merge in every mode, and a double-encoded JSON ------------------------

_MERGES = {
    "concat": lambda a, b: np.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
    "max": np.maximum,
}


def _merge_in_mode(tmp_path, mode):
    """Keras 1.2.2's functional fixture (two branches into a Merge, then a
    Dense), its Merge set to ``mode``: for the elementwise modes, branch
    ``a`` cut to the 4 units of ``b`` (its arrays and the Dense's rows cut
    alike), as Keras 1 wrote such a model, concat_axis=-1 included."""
    import shutil

    import h5py

    fixture = _fixture("keras-1.2.2-tensorflow", "functional")
    config = json.loads(fixture.path("json").read_text())
    weights = tmp_path / "merge.weights.h5"
    shutil.copy(fixture.path("weights"), weights)
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Merge":
            layer["config"]["mode"] = mode
            assert layer["config"]["concat_axis"] == -1
        if layer["name"] == "a" and mode != "concat":
            layer["config"]["output_dim"] = 4
    if mode != "concat":
        with h5py.File(weights, "r+") as file:
            for name, cut in [("a/a_W:0", np.s_[:, :4]), ("a/a_b:0", np.s_[:4]),
                              ("out/out_W:0", np.s_[:4])]:  # fmt: skip
                value = file[name][...][cut]
                del file[name]
                file[name] = value
            for name in ("gamma", "beta", "running_mean", "running_std"):
                key = f"a_bn/a_bn_{name}:0"
                value = file[key][...][:4]
                del file[key]
                file[key] = value
    path = tmp_path / "merge.json"
    path.write_text(json.dumps(config))
    return path, weights


@pytest.mark.parametrize("mode", sorted(_MERGES))
def test_keras1_merge_in_every_mode(tmp_path, mode):
    """Each mode rebuilt as its Keras 3 layer: the model's output against
    NumPy's merge of the two branches' outputs, through the Dense after it."""
    import keras

    path, weights = _merge_in_mode(tmp_path, mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(path, weights=weights)
    x = np.random.default_rng(0).normal(size=(7, 6)).astype("float32")
    branches = keras.Model(
        model.inputs, [model.get_layer("a_act").output, model.get_layer("b_bn").output]
    )
    a, b = (np.asarray(v, "float64") for v in branches.predict(x, verbose=0))
    kernel, bias = model.get_layer("out").get_weights()
    expected = _MERGES[mode](a, b) @ kernel + bias
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_merge_with_another_axis_in_an_elementwise_mode_is_refused(tmp_path):
    path, weights = _merge_in_mode(tmp_path, "sum")
    config = json.loads(path.read_text())
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Merge":
            layer["config"]["concat_axis"] = 1
    path.write_text(json.dumps(config))
    with pytest.raises(legacy.LegacyFileError, match="concat_axis=1 with merge mode"):
        legacy.load_model(path, weights=weights)


def test_a_json_string_holding_the_json_is_decoded_once_more(tmp_path):
    """json.dump(model.to_json(), f): the file holds a JSON string."""
    fixture = _fixture("keras-1.2.2-tensorflow", "dense")
    path = tmp_path / "double.json"
    path.write_text(json.dumps(fixture.path("json").read_text()))
    with pytest.warns(UserWarning, match="JSON string holding the model's JSON"):
        model = legacy.load_model(path, weights=fixture.path("weights"))
    x, y = rf.load_arrays(fixture)
    got = np.asarray(model.predict(x, verbose=0), "float64")
    assert np.max(np.abs(got - y)) <= 1e-4 * np.max(np.abs(y))
    path.write_text(json.dumps("not a model"))
    with pytest.raises(legacy.LegacyFileError, match="not a model's JSON"):
        legacy.load_model(path, weights=fixture.path("weights"))


# -- Lambda layers and other refused layers, supplied by the caller ------------------


def _with_a_lambda(tmp_path):
    """Keras 1.2.2's functional fixture with a Lambda ``scale`` between
    ``a_act`` and the Merge (`real_fixtures.write_with_a_lambda`)."""
    fixture = _fixture("keras-1.2.2-tensorflow", "functional")
    path = tmp_path / "lambda.json"
    rf.write_with_a_lambda(path)
    return fixture, path


def test_a_lambda_is_refused_by_name_and_its_code_never_runs(tmp_path):
    fixture, path = _with_a_lambda(tmp_path)
    with pytest.raises(legacy.LegacyFileError) as raised:
        legacy.load_model(path, weights=fixture.path("weights"))
    message = str(raised.value)
    assert "'scale' (Lambda)" in message and "never run" in message
    assert "substitutes={name:" in message and "['scale']" in message
    assert (raised.value.layer, raised.value.field) == ("scale", "class_name")


@pytest.mark.parametrize("kind", ["function", "layer"])
def test_a_lambda_supplied_as_a_substitute(tmp_path, kind):
    """The caller's function (or layer) in place of the Lambda: the model's
    output against NumPy's, through the branches' outputs."""
    import keras

    fixture, path = _with_a_lambda(tmp_path)
    if kind == "function":
        substitute = lambda t: t * 2.0  # noqa: E731
    else:
        substitute = keras.layers.Rescaling(2.0, name="scale")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(
            path, weights=fixture.path("weights"), substitutes={"scale": substitute}
        )
    x, y = rf.load_arrays(fixture)
    branches = keras.Model(
        model.inputs, [model.get_layer("a_act").output, model.get_layer("b_bn").output]
    )
    a, b = (np.asarray(v, "float64") for v in branches.predict(x, verbose=0))
    kernel, bias = model.get_layer("out").get_weights()
    expected = np.concatenate([2.0 * a, b], axis=-1) @ kernel + bias
    np.testing.assert_allclose(
        model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5
    )
    # The rest of the model is the release's: without the doubling, its y.
    undoubled = np.concatenate([a, b], axis=-1) @ kernel + bias
    assert np.max(np.abs(undoubled - y)) <= 1e-4 * np.max(np.abs(y))


def _fails_when_called(tensor):
    raise ValueError("not for this shape")


def _adds_an_axis(tensor):
    import keras

    return keras.ops.expand_dims(tensor, 1)


@pytest.mark.parametrize(
    "substitutes, message, layer, field",
    [
        # Builds, but does not fit: the weights of the layer after it say so.
        (
            {"scale": lambda t: t[:, :2]},
            "with substitutes for \\['scale'\\]",
            "out",
            "out_W:0",
        ),
        ({"nope": abs}, "name no layer of the architecture", None, "substitutes"),
        ({"scale": 3}, "expected a keras.layers.Layer or a function, got int", "scale",
         "substitutes"),
        ([("scale", abs)], "expected a dict", None, "substitutes"),
        # Fails when called: refused as the substitute's, by its name.
        ({"scale": _fails_when_called}, "layer 'scale' \\(Lambda\\): substitutes: ",
         "scale", "substitutes"),
        # Builds, but what follows cannot take its output: the merge says so.
        ({"scale": _adds_an_axis},
         "its input from the substitute for \\['scale'\\] does not fit", "cat",
         "substitutes"),
    ],
)  # fmt: skip
def test_bad_substitutes_are_refused(tmp_path, substitutes, message, layer, field):
    fixture, path = _with_a_lambda(tmp_path)
    with pytest.raises(legacy.LegacyFileError, match=message) as raised:
        legacy.load_model(
            path, weights=fixture.path("weights"), substitutes=substitutes
        )
    assert (raised.value.layer, raised.value.field) == (layer, field)


# -- layers without a fixture of their own: Keras 1.2.2 architectures as its
# to_json() writes them, with weights files in its layout --------------------------


def _keras1_files(tmp_path, layers, arrays=None):
    """A Keras 1.2.2 Sequential ``to_json()`` and a ``save_weights()`` file
    (its layout: ``layer_names``, per layer ``weight_names`` and arrays)."""
    import h5py

    arrays = arrays or {}
    config = {"class_name": "Sequential", "keras_version": "1.2.2",
              "config": [{"class_name": c, "config": dict(k, name=n)}
                         for n, c, k in layers]}  # fmt: skip
    path = tmp_path / "model.json"
    path.write_text(json.dumps(config))
    weights = tmp_path / "model.weights.h5"
    with h5py.File(weights, "w") as file:
        file.attrs["layer_names"] = [n.encode() for n, _, _ in layers]
        for name, _, _ in layers:
            group = file.create_group(name)
            held = arrays.get(name, {})
            group.attrs["weight_names"] = [f"{name}_{w}:0".encode() for w in held]
            for w, value in held.items():
                group[f"{name}_{w}:0"] = value
    return path, weights


def _predict(path, weights, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(path, weights=weights)
    # The sample shape the architecture declares is the model's input's.
    assert tuple(model.inputs[0].shape[1:]) == x.shape[1:]
    return np.asarray(model.predict(x, verbose=0), "float64")


def test_zero_padding_2d_with_four_sides(tmp_path):
    """Keras 1's ZeroPadding2D(padding=(top, bottom, left, right)), then a
    global average, against NumPy's pad: the count of padded zeros tells
    (1, 2, 3, 4) from a regrouping."""
    layers = [
        ("pad", "ZeroPadding2D", {"padding": [1, 2, 3, 4], "dim_ordering": "tf",
                                  "batch_input_shape": [None, 4, 5, 2]}),
        ("gap", "GlobalAveragePooling2D", {"dim_ordering": "tf"}),
    ]  # fmt: skip
    path, weights = _keras1_files(tmp_path, layers)
    x = np.random.default_rng(0).normal(1.0, 1.0, size=(3, 4, 5, 2))
    padded = np.pad(x, ((0, 0), (1, 2), (3, 4), (0, 0)))
    np.testing.assert_allclose(
        _predict(path, weights, x), padded.mean(axis=(1, 2)), rtol=1e-5
    )


def test_reshape_permute_and_1d_pooling(tmp_path):
    layers = [
        ("reshape", "Reshape", {"target_shape": [2, 6],
                                "batch_input_shape": [None, 12]}),
        ("permute", "Permute", {"dims": [2, 1]}),
        ("pool", "MaxPooling1D", {"pool_length": 3, "stride": None,
                                   "border_mode": "valid"}),
        ("avg", "AveragePooling1D", {"pool_length": 2, "stride": None,
                                      "border_mode": "valid"}),
        ("gmp", "GlobalMaxPooling1D", {}),
    ]  # fmt: skip
    path, weights = _keras1_files(tmp_path, layers)
    x = np.random.default_rng(1).normal(size=(4, 12))
    permuted = x.reshape(4, 2, 6).transpose(0, 2, 1)  # (4, 6, 2)
    pooled = permuted.reshape(4, 2, 3, 2).max(axis=2)  # (4, 2, 2)
    averaged = pooled.reshape(4, 1, 2, 2).mean(axis=2)  # (4, 1, 2)
    np.testing.assert_allclose(
        _predict(path, weights, x), averaged.max(axis=1), rtol=1e-5
    )


@pytest.mark.parametrize("declared", ["batch_input_shape", "input_length"])
def test_embedding_and_global_average_pooling_1d(tmp_path, declared):
    """An Embedding (declared with batch_input_shape, or with input_length
    alone, as Keras 1 allowed: input_dim is then the vocabulary, not the
    sample's shape), then a global average, against NumPy's look-up."""
    table = np.random.default_rng(2).normal(size=(10, 3)).astype("float32")
    config = {"input_dim": 10, "output_dim": 3, "input_length": 4,
              "input_dtype": "int32", "mask_zero": False, "dropout": 0.0}  # fmt: skip
    if declared == "batch_input_shape":
        config["batch_input_shape"] = [None, 4]
    layers = [("emb", "Embedding", config), ("gap", "GlobalAveragePooling1D", {})]
    path, weights = _keras1_files(tmp_path, layers, {"emb": {"W": table}})
    x = np.array([[1, 2, 3, 9], [0, 0, 5, 5]])
    np.testing.assert_allclose(
        _predict(path, weights, x), table[x].mean(axis=1), rtol=1e-5
    )


def _release_predictions(model, fixture):
    x, y = rf.load_arrays(fixture)
    got = np.asarray(model.predict(x, verbose=0, batch_size=len(x)), "float64")
    return float(np.max(np.abs(got - y))), float(np.max(np.abs(y)))


def test_convolution1d_declared_with_input_dim_and_input_length(tmp_path):
    """Keras 0.x/1.x let a first Convolution1D declare input_dim (channels)
    and input_length (steps) instead of batch_input_shape: the same model,
    the release's own predictions."""
    fixture = _fixture("keras-1.2.2-tensorflow", "conv1d")

    def edit(config):
        first = config["config"][0]["config"]
        steps, channels = first.pop("batch_input_shape")[1:]
        first["input_dim"], first["input_length"] = channels, steps
        assert channels != steps

    path = _edited(tmp_path, fixture, edit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(path, weights=fixture.path("weights"))
    error, scale = _release_predictions(model, fixture)
    assert error <= 1e-4 * scale


def test_keras2_json_that_records_theano_flips_kernels(tmp_path):
    """A Keras 2 JSON that records backend "theano" with a weights file that
    does not (its attribute removed): the kernels are still flipped, and the
    model predicts what the release did."""
    import shutil

    import h5py

    fixture = _fixture("keras-2.0.8-theano", "conv2d_cf")
    weights = tmp_path / "no-backend.weights.h5"
    shutil.copy(fixture.path("weights"), weights)
    with h5py.File(weights, "r+") as file:
        del file.attrs["backend"]
    assert json.loads(fixture.path("json").read_text())["backend"] == "theano"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(fixture.path("json"), weights=weights)
    error, scale = _release_predictions(model, fixture)
    assert error <= 1e-4 * scale


@pytest.mark.parametrize("ordering", ["tf", "th"])
@pytest.mark.parametrize(
    "rows, cols, channels, filters",
    [(2, 3, 2, 4),  # no two sizes alike: the shapes tell the layout
     (3, 3, 3, 3)],  # every size alike: only the config's dim_ordering does
)  # fmt: skip
def test_a_kernel_in_either_ordering(tmp_path, ordering, rows, cols, channels, filters):
    """Convolution2D as Keras 1.2.2 on TensorFlow stored it in each
    ordering, against NumPy's cross-correlation."""
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(rows, cols, channels, filters)).astype("float32")
    bias = rng.normal(size=filters).astype("float32")
    height, width = 5, 6
    shape = [height, width, channels] if ordering == "tf" else [channels, height, width]
    stored = kernel if ordering == "tf" else kernel.transpose(3, 2, 0, 1)
    layers = [
        ("conv", "Convolution2D", {"nb_filter": filters, "nb_row": rows,
                                   "nb_col": cols, "border_mode": "valid",
                                   "subsample": [1, 1], "dim_ordering": ordering,
                                   "activation": "linear", "bias": True,
                                   "batch_input_shape": [None, *shape]}),
        ("flat", "Flatten", {}),
    ]  # fmt: skip
    path, weights = _keras1_files(tmp_path, layers, {"conv": {"W": stored, "b": bias}})
    x = rng.normal(size=(3, height, width, channels))
    out_h, out_w = height - rows + 1, width - cols + 1
    expected = np.zeros((3, out_h, out_w, filters))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i : i + rows, j : j + cols, :]
            expected[:, i, j, :] = np.einsum("nrcs,rcsf->nf", patch, kernel) + bias
    if ordering == "th":
        x, expected = x.transpose(0, 3, 1, 2), expected.transpose(0, 3, 1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(path, weights=weights, backend="tensorflow")
    got = np.asarray(model.predict(x, verbose=0), "float64")
    np.testing.assert_allclose(got, expected.reshape(3, -1), rtol=1e-4, atol=1e-4)


def _keras2_two_inputs(tmp_path, merge_class):
    """A Keras 2.2.4 functional ``to_json()``: inputs in_a and in_b (listed
    in the layers in the other order, b first) into one merge layer; and its
    weights file (no layer has weights)."""
    import h5py

    def input_layer(name):
        return {"name": name, "class_name": "InputLayer", "inbound_nodes": [],
                "config": {"batch_input_shape": [None, 3], "dtype": "float32",
                           "sparse": False, "name": name}}  # fmt: skip

    merge = {"name": "merge", "class_name": merge_class,
             "config": {"name": "merge", "trainable": True},
             "inbound_nodes": [[["in_a", 0, 0, {}], ["in_b", 0, 0, {}]]]}  # fmt: skip
    if merge_class == "Concatenate":
        merge["config"]["axis"] = -1
    config = {"class_name": "Model", "keras_version": "2.2.4", "backend": "tensorflow",
              "config": {"name": "m",
                         "layers": [input_layer("in_b"), input_layer("in_a"), merge],
                         "input_layers": [["in_a", 0, 0], ["in_b", 0, 0]],
                         "output_layers": [["merge", 0, 0]]}}  # fmt: skip
    path = tmp_path / "merge2.json"
    path.write_text(json.dumps(config))
    weights = tmp_path / "merge2.weights.h5"
    with h5py.File(weights, "w") as file:
        file.attrs["layer_names"] = [b"in_b", b"in_a", b"merge"]
        file.attrs["keras_version"], file.attrs["backend"] = b"2.2.4", b"tensorflow"
        for name in ("in_b", "in_a", "merge"):
            file.create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
    return path, weights


@pytest.mark.parametrize(
    "merge_class, expected",
    [("Add", np.add), ("Multiply", np.multiply),
     ("Average", lambda a, b: (a + b) / 2), ("Maximum", np.maximum),
     ("Concatenate", lambda a, b: np.concatenate([a, b], axis=-1))],
)  # fmt: skip
def test_keras2_merges_and_the_order_of_the_inputs(tmp_path, merge_class, expected):
    """Keras 2's merge layers against NumPy, the model's inputs in
    input_layers' order (in_a, in_b) although the layers list them the other
    way round (a concatenation tells the two apart)."""
    path, weights = _keras2_two_inputs(tmp_path, merge_class)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(path, weights=weights)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    got = model.predict([a.astype("float32"), b.astype("float32")], verbose=0)
    np.testing.assert_allclose(got, expected(a, b), rtol=1e-5, atol=1e-6)


# -- damaged architectures: one LegacyFileError each, never another exception ------


def _layers_of(config):
    body = config["config"]
    return body["layers"] if isinstance(body, dict) else body


@pytest.mark.parametrize(
    "release, name, edit, field",
    [
        ("keras-1.2.2-tensorflow", "dense",
         lambda c: c.update(config={"name": "s"}), "layers"),
        ("keras-1.2.2-tensorflow", "dense",
         lambda c: c.update(class_name="Graph2"), "class_name"),
        ("keras-1.2.2-tensorflow", "dense",
         lambda c: _layers_of(c).insert(1, 7), None),
        ("keras-1.2.2-tensorflow", "dense",
         lambda c: _layers_of(c)[0]["config"].update(batch_input_shape=None,
                                                     input_dim=None),
         "input_shape"),
        ("keras-1.2.2-tensorflow", "functional",
         lambda c: c["config"].pop("layers"), "layers"),
        ("keras-1.2.2-tensorflow", "functional",
         lambda c: _layers_of(c)[1].update(inbound_nodes=[[["x", 0, 0]]] * 2),
         "inbound_nodes"),
        ("keras-1.2.2-tensorflow", "functional",
         lambda c: _layers_of(c)[1].update(inbound_nodes=[[["x", 1, 0]]]),
         "inbound_nodes"),
        ("keras-1.2.2-tensorflow", "dense",
         lambda c: c.update(keras_version="1x.2"), "keras_version"),
        ("keras-1.2.2-tensorflow", "dense",
         lambda c: c.update(keras_version="\u00b2"), "keras_version"),
        ("keras-1.2.2-tensorflow", "functional",
         lambda c: _layers_of(c)[0]["config"].pop("batch_input_shape"),
         "input_shape"),
        ("keras-1.2.2-tensorflow", "functional",
         lambda c: _layers_of(c)[0]["config"].update(batch_input_shape=[None, 6, None]),
         "input_shape"),
    ],
    ids=["no-layers", "model-class", "layer-not-a-dict", "no-input-shape",
         "functional-no-layers", "shared-layer", "second-node", "version-1x",
         "version-superscript", "input-without-shape", "input-of-unknown-size"],
)  # fmt: skip
def test_a_damaged_architecture_is_one_legacy_file_error(
    tmp_path, release, name, edit, field
):
    fixture = _fixture(release, name)
    path = _edited(tmp_path, fixture, edit)
    with pytest.raises(legacy.LegacyFileError) as raised:
        legacy.load_model(path, weights=fixture.path("weights"))
    assert raised.value.field == field
    assert len(str(raised.value)) < 2000


def _set(index, **values):
    def edit(config):
        _layers_of(config)[index]["config"].update(values)

    return edit


@pytest.mark.parametrize(
    "edit, field, message",
    [
        (_set(0, padding="full"), "border_mode", "expected 'valid' or 'same'"),
        (_set(0, groups=2), "groups", "grouped convolution"),
        (_set(1, axis=[1, 3]), "axis", "several axes"),
        (_set(3, ignore_border=False), "ignore_border", "partial windows"),
        (_set(5, unknown_argument=3), "unknown_argument", "not supported"),
    ],
    ids=["full-padding", "groups", "several-axes", "ignore-border", "unknown-argument"],
)
def test_arguments_it_cannot_rebuild_are_refused_by_name(
    tmp_path, edit, field, message
):
    """Keras 2.2.4's conv net with one argument it cannot rebuild exactly:
    refused, naming the layer and the argument, before anything is built."""
    fixture = _fixture("keras-2.2.4-tensorflow", "conv2d_cl")
    path = _edited(tmp_path, fixture, edit)
    with pytest.raises(legacy.LegacyFileError, match=message) as raised:
        legacy.load_model(path, weights=fixture.path("weights"))
    assert raised.value.field == field
    assert raised.value.layer is not None


@pytest.mark.parametrize("mode", ["dot", ["x"], 3])
def test_an_unknown_merge_mode_is_refused(tmp_path, mode):
    """Refused once, by name (not its concat_axis as well)."""
    fixture = _fixture("keras-1.2.2-tensorflow", "functional")

    def edit(config):
        for layer in _layers_of(config):
            if layer["class_name"] == "Merge":
                layer["config"]["mode"] = mode

    path = _edited(tmp_path, fixture, edit)
    with pytest.raises(legacy.LegacyFileError, match="merge mode") as raised:
        legacy.load_model(path, weights=fixture.path("weights"))
    assert (raised.value.layer, raised.value.field) == ("cat", "mode")


def test_dropout_and_zero_padding_1d_rebuild(tmp_path):
    """Keras 1's Dropout(p) (identity at inference) and ZeroPadding1D, against
    NumPy."""
    layers = [
        ("drop", "Dropout", {"p": 0.5, "batch_input_shape": [None, 5, 2]}),
        ("pad", "ZeroPadding1D", {"padding": 2}),
        ("gap", "GlobalAveragePooling1D", {}),
    ]
    path, weights = _keras1_files(tmp_path, layers)
    x = np.random.default_rng(5).normal(1.0, 1.0, size=(3, 5, 2))
    expected = np.pad(x, ((0, 0), (2, 2), (0, 0))).mean(axis=1)
    np.testing.assert_allclose(_predict(path, weights, x), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_normalization": "stock"},
         "batch_normalization: expected 'keras_bn' or 'keras', got 'stock'."),
        ({"channels_first": "first"},
         "channels_first: expected 'auto', 'native' or 'transpose', got 'first'."),
        ({"dim_ordering": "channels_first"},
         "dim_ordering: expected None, 'th' or 'tf', got 'channels_first'."),
    ],
    ids=["batch-normalization", "channels-first", "dim-ordering"],
)  # fmt: skip
def test_bad_options_are_refused_before_any_file_is_read(tmp_path, kwargs, message):
    """The options are checked first: the path (absent here) is not even
    opened."""
    with pytest.raises(ValueError) as raised:
        legacy.load_model(tmp_path / "absent.json", **kwargs)
    assert str(raised.value) == message


# Keras 1.2.2 layers with one argument it cannot rebuild: (class, config,
# field, message).
_REFUSED = [
    ("Convolution2D", {"nb_filter": 2, "nb_row": 3, "nb_col": 3, "dim_ordering": "xx",
                       "batch_input_shape": [None, 5, 5, 2]},
     "dim_ordering", "dim_ordering 'xx' (expected 'th' or 'tf')"),
    ("Convolution2D", {"nb_filter": 2, "nb_row": 3, "nb_col": 3,
                       "data_format": "channels_middle",
                       "batch_input_shape": [None, 5, 5, 2]},
     "data_format", "data_format 'channels_middle'"),
    ("BatchNormalization", {"epsilon": "small", "batch_input_shape": [None, 3]},
     "epsilon", "epsilon 'small' (expected a number >= 0)"),
    # JSON's true is a bool, not an epsilon of 1.
    ("BatchNormalization", {"epsilon": True, "batch_input_shape": [None, 3]},
     "epsilon", "epsilon True (expected a number >= 0)"),
    ("ZeroPadding2D", {"padding": [1, 2, 3], "dim_ordering": "tf",
                       "batch_input_shape": [None, 4, 4, 1]},
     "padding", "padding [1, 2, 3] (expected 2 entries)"),
    ("UpSampling3D", {"size": 2, "interpolation": "bilinear", "dim_ordering": "tf",
                      "batch_input_shape": [None, 2, 2, 2, 1]},
     "interpolation", "interpolation 'bilinear'"),
    ("LSTM", {"output_dim": 2, "stateful": True, "batch_input_shape": [None, 3, 2]},
     "stateful", "stateful=True (state kept across batches)"),
    ("LSTM", {"output_dim": 2, "return_state": True,
              "batch_input_shape": [None, 3, 2]},
     "return_state", "return_state=True (several outputs)"),
    ("GRU", {"output_dim": 2, "time_major": True, "batch_input_shape": [None, 3, 2]},
     "time_major", "time_major=True"),
    ("TimeDistributed", {"layer": "Dense", "batch_input_shape": [None, 3, 2]},
     "layer", "wrapped layer 'Dense'"),
    ("TimeDistributed", {"layer": {"class_name": "Highway", "config": {"name": "h"}},
                         "batch_input_shape": [None, 3, 2]},
     "layer.class_name", "layer class 'Highway' is not supported"),
    ("Bidirectional", {"layer": {"class_name": "LSTM",
                                 "config": {"name": "l", "output_dim": 2}},
                       "merge_mode": "concatenate",
                       "batch_input_shape": [None, 3, 2]},
     "merge_mode", "merge_mode 'concatenate'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "class_name, config, field, message",
    _REFUSED,
    ids=["dim-ordering", "data-format", "epsilon-text", "epsilon-bool", "padding-three",
         "interpolation-3d", "stateful", "return-state", "time-major",
         "wrapped-text", "wrapped-unknown", "bidirectional-merge"],
)  # fmt: skip
def test_a_keras1_argument_it_cannot_rebuild_is_refused_by_name(
    tmp_path, class_name, config, field, message
):
    """The one layer's argument is named, with what it holds, before
    anything is built."""
    path, weights = _keras1_files(tmp_path, [("only", class_name, config)])
    with pytest.raises(legacy.LegacyFileError) as raised:
        legacy.load_model(path, weights=weights)
    assert (raised.value.layer, raised.value.field) == ("only", field)
    assert f"layer 'only' ({class_name}): {field}: {message}" in str(raised.value)


@pytest.mark.parametrize(
    "padding, sides",
    [({"top_pad": 1, "bottom_pad": 2, "left_pad": 3, "right_pad": 4},
      ((1, 2), (3, 4))),
     ({"top_pad": 2}, ((2, 0), (0, 0))),
     (2, ((2, 2), (2, 2)))],
    ids=["keras-1.2-mapping", "mapping-of-one-side", "one-number"],
)  # fmt: skip
def test_zero_padding_2d_from_a_mapping_or_one_number(tmp_path, padding, sides):
    """Keras 1.2's ZeroPadding2D ``{"top_pad": ...}`` (absent sides 0) and a
    single number for every side, against NumPy's pad; an unknown argument
    that holds nothing (null) is ignored."""
    layers = [
        ("pad", "ZeroPadding2D", {"padding": padding, "dim_ordering": "tf",
                                  "unused": None,
                                  "batch_input_shape": [None, 4, 5, 2]}),
        ("gap", "GlobalAveragePooling2D", {"dim_ordering": "tf"}),
    ]  # fmt: skip
    path, weights = _keras1_files(tmp_path, layers)
    x = np.random.default_rng(6).normal(1.0, 1.0, size=(3, 4, 5, 2))
    padded = np.pad(x, ((0, 0), *sides, (0, 0)))
    np.testing.assert_allclose(
        _predict(path, weights, x), padded.mean(axis=(1, 2)), rtol=1e-5
    )


def _keras2_files(tmp_path, class_name, config, arrays):
    """A Keras 2.2.4 (TensorFlow) Sequential of one layer named ``only``:
    its ``to_json()`` and its ``save_weights()`` file."""
    from legacy_fixtures import keras2_layer, write_keras2

    layer = {"class_name": class_name, "config": dict(config, name="only")}
    model = {
        "class_name": "Sequential",
        "keras_version": "2.2.4",
        "backend": "tensorflow",
        "config": {"name": "s", "layers": [layer]},
    }
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    weights = tmp_path / "model.weights.h5"
    write_keras2(weights, [keras2_layer("only", arrays)], keras_version="2.2.4")
    return path, weights


def test_a_transposed_convolution_with_output_padding(tmp_path):
    """Keras 2.2's Conv2DTranspose(strides=2, output_padding=1): each input
    value scatters its kernel to rows and columns 2i..2i+2, and the output
    gains one more row and column (bias only) at the end: 8 x 8 from 3 x 3."""
    rng = np.random.default_rng(7)
    kernel, bias = rng.normal(size=(3, 3, 2, 1)), rng.normal(size=2)
    config = {"filters": 2, "kernel_size": [3, 3], "strides": [2, 2],
              "padding": "valid", "output_padding": [1, 1],
              "data_format": "channels_last", "activation": "linear",
              "use_bias": True, "batch_input_shape": [None, 3, 3, 1]}  # fmt: skip
    path, weights = _keras2_files(
        tmp_path, "Conv2DTranspose", config, {"kernel": kernel, "bias": bias}
    )
    x = rng.normal(size=(2, 3, 3, 1))
    expected = np.zeros((2, 8, 8, 2)) + bias
    for i in range(3):
        for j in range(3):
            expected[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += (
                x[:, i, j, 0, None, None, None] * kernel[None, :, :, :, 0]
            )
    np.testing.assert_allclose(_predict(path, weights, x), expected, atol=1e-5)


@pytest.mark.parametrize("release", ["keras-0.2.0-theano", "keras-0.3.3-theano"])
def test_keras0_statistics_per_activation_of_flat_samples_rebuild_stock(release):
    """Keras 0.x's BatchNormalization kept statistics per activation; on
    flat samples that is the stock layer's per-feature axis, so the stock
    layer rebuilds such a model and predicts what the release did."""
    directory = rf.ROOT / release
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(
            directory / "dense.json",
            weights=directory / "dense.weights.h5",
            batch_normalization="keras",
            backend="theano",
        )
    assert any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers
    )
    arrays = np.load(directory / "dense.npz")
    got = model.predict(arrays["x"], verbose=0)
    scale = float(np.max(np.abs(arrays["y"])))
    assert np.max(np.abs(got - arrays["y"])) <= 1e-4 * scale


@pytest.mark.parametrize("weights", ["dense.weights.h5", "conv1d.weights.h5"])
def test_the_recursion_limit_is_the_callers_again(weights):
    """Rebuilding raises Python's recursion limit for deep models, and gives
    the caller's back afterwards, whether the model loads or is refused."""
    import sys

    directory = rf.ROOT / "keras-1.2.2-theano"
    before = sys.getrecursionlimit()
    # Python's default; what the process had (libraries raise it) returns
    # after the test.
    sys.setrecursionlimit(1000)
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                legacy.load_model(directory / "dense.json", weights=directory / weights)
        except legacy.LegacyFileError:
            assert weights == "conv1d.weights.h5"  # another model's weights
        assert sys.getrecursionlimit() == 1000
    finally:
        sys.setrecursionlimit(before)


def test_a_type_error_deep_in_keras_is_a_legacy_file_error(tmp_path):
    """A hostile value that Keras itself trips over with a TypeError (a
    Dropout rate given as a list: Keras compares it with 0) is reported as
    the file's fault, naming the layer, like every other refusal."""
    directory = rf.ROOT / "keras-1.2.2-theano"
    config = json.loads((directory / "dense.json").read_text())
    dropout = {"class_name": "Dropout", "config": {"name": "dr", "p": [0.5]}}
    config["config"].insert(1, dropout)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    with pytest.raises(legacy.LegacyFileError, match="layer 'dr' \\(Dropout\\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            legacy.load_model(path, weights=directory / "dense.weights.h5")


def test_weights_given_for_a_whole_model_file_are_the_ones_loaded(tmp_path):
    """A whole-model file's own weights load unless weights= names another
    file: then that file's arrays are the model's (read back here with
    h5py)."""
    import shutil

    import h5py

    directory = rf.ROOT / "keras-1.2.2-theano"
    other = tmp_path / "other.weights.h5"
    shutil.copy(directory / "dense.weights.h5", other)
    with h5py.File(other, "r+") as file:
        kernel = file["dense_1"]["dense_1_W"]
        kernel[...] = kernel[...] * 2.0 + 1.0
        expected = kernel[...]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = legacy.load_model(directory / "dense.model.h5")
        given = legacy.load_model(
            directory / "dense.model.h5", weights=other, keras_version="1.2.2"
        )
    (own_dense, given_dense) = (m.get_layer("dense_1") for m in (own, given))
    np.testing.assert_array_equal(to_numpy(given_dense.kernel), expected)
    assert not np.array_equal(to_numpy(own_dense.kernel), expected)


@pytest.mark.parametrize("channels_first", ["native", "transpose"])
def test_the_report_says_permutes_only_where_there_are(channels_first):
    """The report lines of a channels-first model's convolutions say
    "between Permutes" when the rebuilt model wraps them so (transposed),
    and not when they run channels-first as they are."""
    from keras_bn.legacy.models import rebuild

    directory = rf.ROOT / "keras-1.2.2-theano"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = rebuild(
            directory / "conv2d_cf.json",
            weights=directory / "conv2d_cf.weights.h5",
            channels_first=channels_first,
        )
    (convolution,) = [line for line in rebuilt.layers if "Convolution2D" in line]
    assert convolution.endswith(" between Permutes") == (channels_first == "transpose")
    layers = rebuilt.model.layers
    permutes = [layer for layer in layers if isinstance(layer, keras.layers.Permute)]
    assert bool(permutes) == (channels_first == "transpose")


def test_weights_that_do_not_fit_are_refused_as_they_are():
    """Weights of another model: refused with what does not fit, and no word
    of substitutes where none were given."""
    directory = rf.ROOT / "keras-1.0.8-theano"
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_model(
            directory / "dense.json", weights=directory / "conv1d.weights.h5"
        )
    assert caught.value.path == str(directory / "conv1d.weights.h5")
    assert "substitutes" not in str(caught.value)


def _rebuilt(path, **kwargs):
    from keras_bn.legacy.models import rebuild

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rebuild(rf.ROOT / path, **kwargs)


_TRAINING_LINE = (
    "initializers, regularizers, constraints and dropout rates only matter for "
    "training: dropped or kept as is"
)
_PERMUTE_LINE = (
    "channels-first convolutions/pooling run channels-last between Permute "
    "layers (the data between layers stays channels-first)"
)


@pytest.mark.parametrize(
    "path, kwargs, options, permuted",
    [
        # Keras 0.3.3 records neither its backend nor a version; its layers
        # record 'th'; a weights file records no epsilon.
        ("keras-0.3.3-theano/conv2d_cf.json",
         dict(weights=rf.ROOT / "keras-0.3.3-theano/conv2d_cf.weights.h5",
              backend="theano", channels_first="native"),
         {"backend": "theano", "epsilon": {"batchnormalization_1": 1e-06},
          "dim_ordering": "th"}, []),
        # A whole Keras 2 file records everything.
        ("keras-2.2.4-tensorflow/conv2d_cf.model.h5",
         dict(channels_first="transpose"), {},
         ["conv2d_1", "max_pooling2d_1"]),
        # A Keras 1 weights file records no version: the JSON's, or the
        # caller's.
        ("keras-1.0.7-tensorflow/dense.json",
         dict(weights=rf.ROOT / "keras-1.0.7-tensorflow/dense.weights.h5",
              channels_first="transpose"),
         {"keras_version": "1.0.7",
          "epsilon": {"batchnormalization_2": 1e-06,
                      "batchnormalization_3": 1e-06}}, []),
    ],
)  # fmt: skip
def test_the_report_says_what_load_weights_was_told(path, kwargs, options, permuted):
    rebuilt = _rebuilt(path, **kwargs)
    expected = [f"load_weights options from the architecture: {options}"]
    if permuted:
        expected.append(_PERMUTE_LINE)
    assert rebuilt.assumptions == [*expected, _TRAINING_LINE]
    wrapped = [
        line.split(":")[0]
        for line in rebuilt.layers
        if line.endswith(" between Permutes")
    ]
    assert wrapped == permuted


def test_the_caller_s_version_comes_before_the_architecture_s():
    rebuilt = _rebuilt(
        "keras-1.0.7-tensorflow/dense.json",
        weights=rf.ROOT / "keras-1.0.7-tensorflow/dense.weights.h5",
        keras_version="1.0.8",
    )
    assert "'keras_version': '1.0.8'" in rebuilt.assumptions[0]


def test_a_substitute_is_reported_by_its_name():
    def double(x):
        return x * 2.0

    rebuilt = _rebuilt(
        "keras-1.2.2-tensorflow/dense.json",
        weights=rf.ROOT / "keras-1.2.2-tensorflow/dense.weights.h5",
        substitutes={"activation_1": double},
    )
    assert "activation_1: Activation -> substitute double" in rebuilt.layers
    layer = keras.layers.Rescaling(2.0, name="activation_1")
    rebuilt = _rebuilt(
        "keras-1.2.2-tensorflow/dense.json",
        weights=rf.ROOT / "keras-1.2.2-tensorflow/dense.weights.h5",
        substitutes={"activation_1": layer},
    )
    assert "activation_1: Activation -> substitute Rescaling" in rebuilt.layers


_K122 = rf.ROOT / "keras-1.2.2-tensorflow"


def _refused_rebuild(path, **kwargs):
    with pytest.raises(legacy.LegacyFileError) as caught:
        _rebuilt(path, **kwargs)
    assert type(caught.value) is legacy.LegacyFileError
    return caught.value


def test_an_architecture_without_weights_is_refused_by_field():
    path = _K122 / "dense.json"
    error = _refused_rebuild(path)
    assert str(error) == (
        f"{path}: an architecture file holds no weights: pass weights= (the "
        "save_weights() HDF5 file)."
    )
    assert (error.path, error.field, error.layer) == (str(path), "weights", None)


def test_a_weights_file_alone_is_refused_by_field():
    path = _K122 / "dense.weights.h5"
    error = _refused_rebuild(path)
    assert str(error) == (
        f"{path}: a weights file holds no architecture: pass the model's "
        "to_json()/to_yaml() file, with this file as weights=."
    )
    assert (error.path, error.field, error.layer) == (str(path), "model_config", None)


def test_a_json_string_that_is_not_a_model_and_one_that_is(tmp_path):
    path = tmp_path / "double.json"
    path.write_text(json.dumps("[1, "))
    error = _refused_rebuild(path, weights=_K122 / "dense.weights.h5")
    assert str(error) == f"{path}: a JSON string that is not a model's JSON."
    path.write_text(json.dumps((_K122 / "dense.json").read_text()))
    with pytest.warns(UserWarning) as caught:
        legacy.load_model(path, weights=_K122 / "dense.weights.h5")
    messages = [str(w.message) for w in caught]
    assert (
        f"{path}: the architecture is a JSON string holding the model's JSON "
        "(json.dump of to_json()'s result); decoded it once more."
    ) in messages


_ELEVEN = {f"ghost_{k:02}": abs for k in range(11)}


@pytest.mark.parametrize(
    "substitutes, message, layer",
    [
        ({1: abs}, "substitutes: expected a dict of layer names to layers or "
         "functions, got dict.", None),
        ([("activation_1", abs)], "substitutes: expected a dict of layer names "
         "to layers or functions, got list.", None),
        ({"activation_1": abs, "nope": abs},
         "substitutes: ['nope'] name no layer of the architecture.", None),
        (_ELEVEN, "substitutes: ['ghost_00', 'ghost_01', 'ghost_02', 'ghost_03', "
         "'ghost_04', 'ghost_05', 'ghost_06', 'ghost_07', 'ghost_08', 'ghost_09'] "
         "name no layer of the architecture.", None),
        ({"activation_1": "abs"}, "substitutes: 'activation_1': expected a "
         "keras.layers.Layer or a function, got str.", "activation_1"),
    ],
    ids=["key-not-text", "not-a-dict", "unknown", "ten-named", "not-callable"],
)  # fmt: skip
def test_bad_substitutes_are_refused_in_so_many_words(substitutes, message, layer):
    path = _K122 / "dense.json"
    error = _refused_rebuild(
        path, weights=_K122 / "dense.weights.h5", substitutes=substitutes
    )
    assert str(error) == f"{path}: {message}"
    assert (error.field, error.layer) == ("substitutes", layer)


_HINT = (
    " To supply ['activation_1', 'dense_2'] yourself, pass substitutes="
    "{name: a keras.layers.Layer or a function}."
)


@pytest.mark.parametrize("unknown_classes", [True, False])
def test_the_substitutes_hint_names_the_unknown_layers_only(tmp_path, unknown_classes):
    """Layers of a class it cannot rebuild are named in the hint, sorted;
    with only arguments refused there is no hint."""

    def edit(config):
        if unknown_classes:
            config["config"][3]["class_name"] = "MaxoutDense"
            config["config"][2]["class_name"] = "Highway"
        else:
            config["config"][2]["config"]["activation"] = "nonesuch"

    path = tmp_path / "edited.json"
    config = json.loads((_K122 / "dense.json").read_text())
    edit(config)
    path.write_text(json.dumps(config))
    error = _refused_rebuild(path, weights=_K122 / "dense.weights.h5")
    if unknown_classes:
        assert str(error).startswith(f"{path}: cannot rebuild 2 thing(s): ")
        assert str(error).endswith(_HINT)
        assert (error.layer, error.field) == ("activation_1", "class_name")
    else:
        assert str(error).startswith(
            f"{path}: cannot rebuild 1 thing(s): layer 'activation_1' "
            "(Activation): activation: "
        )
        assert "To supply" not in str(error) and str(error).endswith(".")
        assert (error.layer, error.field) == ("activation_1", "activation")


@pytest.mark.parametrize(
    "shape, refused",
    [([None, 6, None], "(6, None)"), (None, "None"), ([None, None, 6], None)],
    ids=["feature-axis-unknown", "no-shape", "first-axis-unknown"],
)
def test_an_input_of_unknown_shape_is_refused_but_its_first_axis(
    tmp_path, shape, refused
):
    """An input's first sample axis may be unknown (time steps); any other
    unknown dimension, or no shape at all, is refused by the input's name."""
    config = json.loads((_K122 / "functional.json").read_text())
    config["config"]["layers"][0]["config"]["batch_input_shape"] = shape
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(config))
    weights = _K122 / "functional.weights.h5"
    if refused is None:
        rebuilt = _rebuilt(path, weights=weights)
        assert tuple(rebuilt.model.inputs[0].shape) == (None, None, 6)
        return
    error = _refused_rebuild(path, weights=weights)
    assert str(error) == (
        f"{path}: cannot rebuild 1 thing(s): layer 'x' (Input): input_shape: "
        f"unknown shape {refused}."
    )
    assert (error.layer, error.field) == ("x", "input_shape")


def _numbers_in(path):
    import h5py

    sizes = []
    with h5py.File(path, "r") as file:
        file.visititems(
            lambda _, item: (
                sizes.append(int(item.size)) if isinstance(item, h5py.Dataset) else None
            )
        )
    return sum(sizes)


@pytest.mark.parametrize("more", [0, 1])
def test_a_size_up_to_the_weights_files_numbers_is_built(tmp_path, more):
    """A Dense of as many units as the weights file holds numbers is built
    (then refused as not fitting the weights); one more is refused first."""
    weights = _K122 / "dense.weights.h5"
    elements = _numbers_in(weights)
    config = json.loads((_K122 / "dense.json").read_text())
    config["config"][3]["config"]["output_dim"] = elements + more
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(config))
    error = _refused_rebuild(path, weights=weights)
    if more:
        assert str(error) == (
            f"{path}: cannot rebuild 1 thing(s): layer 'dense_2' (Dense): units: "
            f"units={elements + 1} is more than the weights file's {elements} "
            "numbers justify."
        )
        assert (error.layer, error.field) == ("dense_2", "units")
    else:
        assert "justify" not in str(error) and error.path == str(weights)


@pytest.mark.parametrize(
    "release, form",
    [("keras-1.0.5-theano", "std"), ("keras-1.0.6-theano", "std"),
     ("keras-1.0.7-theano", "theano_variance"),
     ("keras-1.0.6-tensorflow", "variance"), ("keras-1.0.7-tensorflow", "variance"),
     ("keras-1.0.8-theano", "variance"),
     ("keras-0.3.3-theano", "std")],
)  # fmt: skip
def test_the_report_says_what_the_fourth_array_is(release, form):
    """A standard deviation up to Keras 1.0.5, a variance from 1.0.7 on,
    1.0.6 as its backend computed it (docs/legacy.md)."""
    directory = rf.ROOT / release
    rebuilt = _rebuilt(
        directory / "dense.json",
        weights=directory / "dense.weights.h5",
        backend="theano" if release.startswith("keras-0") else None,
    )
    meaning = {
        "std": "standard deviation, (x - mean) / (running_std + epsilon)",
        "variance": "variance, (x - mean) / sqrt(variance + epsilon)",
        "theano_variance": "variance, (x - mean) / (sqrt(variance) + epsilon)",
    }[form]
    assert rebuilt.conversions[0] == (
        f"BatchNormalization fourth array: {meaning}; converted to each target "
        "layer's form and epsilon"
    )


def test_what_load_weights_warned_ends_the_assumptions_and_is_warned_again():
    """rebuild records load_weights' warnings as the last assumptions (and in
    ``warned``); load_model warns of each of them once."""
    from keras_bn.legacy.models import rebuild

    (fixture,) = [f for f in FIXTURES if _no_statistics(f)]
    kwargs = _kwargs(fixture, "json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = rebuild(fixture.path("json"), **kwargs)
    assert rebuilt.warned and all("gamma and beta" in w for w in rebuilt.warned)
    count = len(rebuilt.warned)
    assert rebuilt.assumptions[-count:] == rebuilt.warned
    assert rebuilt.assumptions[-count - 1] == _TRAINING_LINE
    assert not [w for w in caught if str(w.message) in rebuilt.warned]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy.load_model(fixture.path("json"), **kwargs)
    again = [str(w.message) for w in caught if str(w.message) in rebuilt.warned]
    assert again == rebuilt.warned


def test_a_model_that_warns_of_nothing_reports_no_warnings():
    rebuilt = _rebuilt(_K122 / "dense.json", weights=_K122 / "dense.weights.h5")
    assert rebuilt.warned == []
    assert rebuilt.assumptions[-1] == _TRAINING_LINE


def test_weights_that_do_not_fit_a_substitute_s_output_say_so_at_the_end(tmp_path):
    fixture, path = _with_a_lambda(tmp_path)
    weights = fixture.path("weights")
    with pytest.raises(legacy.LegacyFileError) as raised:
        legacy.load_model(
            path, weights=weights, substitutes={"scale": lambda t: t[:, :2]}
        )
    error = raised.value
    assert str(error).startswith(f"{weights}: ")
    assert str(error).endswith(
        " (built with substitutes for ['scale']: their outputs set the shapes of "
        "what follows)"
    )
    assert (error.path, error.layer) == (str(weights), "out")


def test_an_output_shape_the_file_declares_is_checked(tmp_path):
    """Keras 1's Deconvolution2D records its output shape: one that Keras 3
    does not compute is refused by the layer's name (3 x 3 into a 3 x 3
    kernel, stride 1, valid: 5 x 5, not the declared 9 x 9)."""
    rng = np.random.default_rng(0)
    layers = [("deconv", "Deconvolution2D", {
        "nb_filter": 2, "nb_row": 3, "nb_col": 3, "output_shape": [None, 9, 9, 2],
        "subsample": [1, 1], "border_mode": "valid", "dim_ordering": "tf",
        "activation": "linear", "bias": True, "batch_input_shape": [None, 3, 3, 1],
    })]  # fmt: skip
    arrays = {"deconv": {"W": rng.normal(size=(3, 3, 2, 1)), "b": np.zeros(2)}}
    path, weights = _keras1_files(tmp_path, layers, arrays)
    with pytest.raises(legacy.LegacyFileError) as raised:
        _rebuilt(path, weights=weights)
    assert str(raised.value) == (
        f"{path}: cannot rebuild 1 thing(s): layer 'deconv' (Deconvolution2D): "
        "config: the file declares the output shape (9, 9, 2); Keras 3 computes "
        "(5, 5, 2)."
    )
    assert (raised.value.layer, raised.value.field) == ("deconv", "config")


@pytest.mark.parametrize("name", ["load_model", "load_weights"])
def test_a_missing_backend_is_one_line_of_advice(monkeypatch, name):
    """keras_bn.legacy's Keras-needing names, where Keras cannot import its
    backend: an ImportError with the advice, its cause not chained."""
    import importlib

    import keras_bn

    def missing(module):
        raise ModuleNotFoundError("no backend", name="torch")

    monkeypatch.delitem(legacy.__dict__, name, raising=False)
    monkeypatch.setattr(importlib, "import_module", missing)
    monkeypatch.setattr(keras_bn, "_backend_advice", lambda error: f"{error.name}!")
    with pytest.raises(ImportError) as raised:
        getattr(legacy, name)
    assert type(raised.value) is ImportError
    assert str(raised.value) == f"keras_bn.legacy.{name}: torch!"
    assert raised.value.__suppress_context__


def test_another_missing_module_is_raised_as_it_is(monkeypatch):
    import importlib

    import keras_bn

    error = ModuleNotFoundError("no numpy", name="numpy")

    def missing(module):
        raise error

    monkeypatch.delitem(legacy.__dict__, "load_model", raising=False)
    monkeypatch.setattr(importlib, "import_module", missing)
    monkeypatch.setattr(keras_bn, "_backend_advice", lambda error: None)
    with pytest.raises(ModuleNotFoundError) as raised:
        _ = legacy.load_model
    assert raised.value is error


def test_an_unknown_name_of_keras_bn_legacy():
    with pytest.raises(AttributeError) as raised:
        _ = legacy.load_everything
    assert str(raised.value) == (
        "module 'keras_bn.legacy' has no attribute 'load_everything'"
    )


@pytest.mark.parametrize("target", ["keras_bn", "keras"])
@pytest.mark.parametrize("kind", ["json", "model"])
def test_a_wrapped_batch_normalization_keeps_its_own_epsilon(
    tmp_path, rng, kind, target
):
    """Keras 2's variance formula with the wrapped layer's epsilon 0.1, not
    the release's default 1e-3."""
    arrays = write_wrapped_batch_norm(tmp_path, rng, epsilon=0.1)
    if kind == "json":
        path, kwargs = tmp_path / "td.json", {"weights": tmp_path / "td.weights.h5"}
    else:
        path, kwargs = tmp_path / "td.model.h5", {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = legacy.load_model(path, batch_normalization=target, **kwargs)
    assert not [w for w in caught if "does not record the epsilon" in str(w.message)]
    x = rng.normal(size=(3, 4, 5)).astype("float32")
    expected = (
        arrays["gamma"]
        * (x - arrays["moving_mean"])
        / np.sqrt(arrays["moving_variance"] + 0.1)
        + arrays["beta"]
    )
    got = to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
