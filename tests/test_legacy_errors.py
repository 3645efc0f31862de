"""keras_bn.legacy: Keras 3 files, and damaged or hostile legacy files.

Every failure is one `LegacyFileError` naming the file, the layer and the
field; a failed load leaves the model bit-identical; `keras-bn inspect`
answers one line and exit status 1."""

import json
import warnings

import h5py
import keras
import numpy as np
import pytest
from conftest import to_numpy
from legacy_fixtures import (
    EXAMPLES,
    batch_norm_config,
    example_arrays,
    keras2_layer,
    sequential_config,
    write_keras0_sequential,
    write_keras2,
)
from reference import seed_featurewise, seed_samplewise

from keras_bn import BatchNormalization, legacy
from keras_bn.cli import main


def example(name):
    (chosen,) = [e for e in EXAMPLES if e.name == name]
    return chosen


def dense_bn_model(target, mode=0, epsilon=1e-3):
    if target == "keras_bn":
        bn = BatchNormalization(epsilon=epsilon, mode=mode, name="bn")
    else:
        bn = keras.layers.BatchNormalization(epsilon=epsilon, name="bn")
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), bn])


def randomize(model, rng):
    dense, bn = model.layers
    dense.set_weights([rng.normal(size=(4, 3)), rng.normal(size=3)])
    bn.set_weights(
        [
            rng.uniform(0.5, 1.5, 3),
            rng.normal(size=3),
            rng.normal(size=3),
            rng.uniform(0.5, 2.0, 3),
        ]
    )
    return model


def saved_h5(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    return path


def snapshot(model):
    return [w.copy() for w in model.get_weights()]


def assert_unchanged(model, before):
    after = model.get_weights()
    assert len(after) == len(before)
    for got, want in zip(after, before):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


# -- Keras 3's own files --------------------------------------------------------


@pytest.mark.parametrize("target", ["keras_bn", "stock"])
def test_keras3_h5_of_a_keras_bn_model_loads_exactly(tmp_path, rng, target):
    """model.save('*.h5') of a keras_bn model records keras_version 3.x and
    'keras_bn>BatchNormalization': its fourth array is a std, its epsilon
    the config's, not a variance with 1e-3."""
    source = randomize(dense_bn_model("keras_bn", epsilon=0.01), rng)
    path = saved_h5(source, tmp_path / "m.h5")
    model = dense_bn_model(target, epsilon=0.001)
    legacy.load_weights(model, path)
    x = rng.normal(size=(16, 4))
    kernel, bias, gamma, beta, mean, std = source.get_weights()
    expected = seed_featurewise(x @ kernel + bias, gamma, beta, mean, std, 0.01)
    got = to_numpy(model(x.astype("float32"), training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_keras3_h5_of_a_samplewise_layer(tmp_path, rng):
    source = randomize(dense_bn_model("keras_bn", mode=1, epsilon=0.01), rng)
    path = saved_h5(source, tmp_path / "m.h5")
    model = dense_bn_model("keras_bn", mode=1, epsilon=0.01)
    legacy.load_weights(model, path)
    x = rng.normal(size=(8, 4))
    kernel, bias, gamma, beta, _, _ = source.get_weights()
    expected = seed_samplewise(x @ kernel + bias, gamma, beta, 0.01)
    got = to_numpy(model(x.astype("float32"), training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    for target, mode in (("stock", 0), ("keras_bn", 0)):
        other = dense_bn_model(target, mode=mode)
        before = snapshot(other)
        with pytest.raises(legacy.LegacyFileError, match="mode=1.*mode=0") as raised:
            legacy.load_weights(other, path)
        assert raised.value.layer == "bn" and raised.value.field == "mode"
        assert_unchanged(other, before)


@pytest.mark.parametrize(
    "suffix, match",
    [(".keras", "keras.saving.load_model"), (".weights.h5", "model.load_weights")],
)
def test_keras3_native_files_point_at_keras(tmp_path, rng, suffix, match):
    source = randomize(dense_bn_model("keras_bn"), rng)
    path = tmp_path / f"m{suffix}"
    if suffix == ".keras":
        source.save(path)
    else:
        source.save_weights(path)
    model = dense_bn_model("keras_bn")
    before = snapshot(model)
    with pytest.raises(legacy.LegacyFileError, match=match):
        legacy.load_weights(model, path)
    assert_unchanged(model, before)
    assert main(["inspect", str(path)]) == 1
    if suffix == ".keras":
        # Told by its content, whatever its name.
        renamed = path.rename(tmp_path / "model.h5")
        with pytest.raises(legacy.LegacyFileError, match=match):
            legacy.load_weights(model, renamed)


# -- damaged attributes -----------------------------------------------------------


def rewrite(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


@pytest.fixture
def keras0_file(tmp_path, rng):
    path = tmp_path / "keras0.h5"
    example("keras0_sequential").write(path, example_arrays(rng))
    return path


@pytest.fixture
def keras2_model_file(tmp_path, rng):
    path = tmp_path / "keras2.h5"
    example("keras2_model").write(path, example_arrays(rng))
    return path


def bn_model(target="keras_bn"):
    bn = BatchNormalization() if target == "keras_bn" else None
    bn = bn or keras.layers.BatchNormalization()
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3),
            keras.layers.Activation("relu"),
            bn,
        ]
    )


def refuses(path, match, layer=None, field=None, **kwargs):
    model = bn_model()
    before = snapshot(model)
    with pytest.raises(legacy.LegacyFileError, match=match) as raised:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            legacy.load_weights(model, path, **kwargs)
    assert str(path) in str(raised.value)
    assert raised.value.path == str(path)
    if layer is not None:
        assert raised.value.layer == layer
    if field is not None:
        assert raised.value.field == field
    assert_unchanged(model, before)
    return raised.value


@pytest.mark.parametrize(
    "key, group, value, match",
    [
        ("nb_layers", "/", "three", "'nb_layers'.*whole number.*'three'"),
        ("nb_layers", "/", 10**12, "'nb_layers'.*1000000000000.*holds 3"),
        ("nb_layers", "/", -1, "'nb_layers'.*-1"),
        ("nb_params", "layer_0", "x", "'nb_params'.*whole number.*'x'"),
        ("nb_params", "layer_0", 10**12, "'nb_params'.*holds 2 members"),
        ("nb_params", "layer_0", 2.5, "'nb_params'.*whole number"),
    ],
)
def test_counts_are_checked_before_allocating(keras0_file, key, group, value, match):
    rewrite(keras0_file, lambda f: f[group].attrs.__setitem__(key, value))
    refuses(keras0_file, match, field=key)
    assert main(["inspect", str(keras0_file)]) == 1


@pytest.mark.parametrize(
    "epsilon, match",
    [
        ("abc", "'epsilon' must be a finite number >= 0, got 'abc'"),
        (None, "'epsilon' must be a finite number >= 0, got None"),
        (float("nan"), "'epsilon' must be a finite number"),
        (-1.0, "'epsilon' must be a finite number >= 0, got -1.0"),
    ],
)
def test_config_epsilon_is_checked(keras2_model_file, epsilon, match):
    config = sequential_config([batch_norm_config("batch_normalization_1", epsilon)])
    rewrite(
        keras2_model_file,
        lambda f: f.attrs.__setitem__("model_config", json.dumps(config).encode()),
    )
    refuses(keras2_model_file, match, layer="batch_normalization_1", field="epsilon")


@pytest.mark.parametrize("target", ["keras_bn", "stock"])
def test_config_epsilon_beyond_float32_is_refused(keras2_model_file, target):
    """1e308 is finite in float64; the converted std or variance is not in
    the float32 variable."""
    config = sequential_config([batch_norm_config("batch_normalization_1", 1e308)])
    rewrite(
        keras2_model_file,
        lambda f: f.attrs.__setitem__("model_config", json.dumps(config).encode()),
    )
    model = bn_model(target)
    before = snapshot(model)
    with pytest.raises(legacy.LegacyFileError, match="must be finit.*float32"):
        legacy.load_weights(model, keras2_model_file)
    assert_unchanged(model, before)


def test_deep_config_is_refused_without_recursion(keras2_model_file, capsys):
    deep = "[" * 20000 + "]" * 20000
    rewrite(keras2_model_file, lambda f: f.attrs.__setitem__("model_config", deep))
    refuses(keras2_model_file, "model_config.*nested deeper", field="model_config")
    assert main(["inspect", str(keras2_model_file)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err


def test_non_text_attribute_is_refused(keras2_model_file, capsys):
    rewrite(keras2_model_file, lambda f: f.attrs.__setitem__("keras_version", 2.5))
    refuses(keras2_model_file, "'keras_version'.*expected text", field="keras_version")
    assert main(["inspect", str(keras2_model_file)]) == 1
    assert "Traceback" not in capsys.readouterr().err


# -- damaged arrays -----------------------------------------------------------------


@pytest.mark.parametrize("where", ["W", "fourth"])
def test_values_beyond_float32_are_refused(tmp_path, rng, where):
    arrays = example_arrays(rng)
    arrays[where] = arrays[where].copy()
    arrays[where].flat[0] = 1e39
    path = tmp_path / "big.h5"
    example("keras0_sequential").write(path, arrays)
    name = "layer_0" if where == "W" else "layer_2"
    field = "param_0" if where == "W" else "param_3"
    error = refuses(path, f"'{field}' must be finite", layer=name, field=field)
    assert "got 1 non-finite values in float32" in str(error)


@pytest.mark.parametrize(
    "value, match",
    [
        (np.ones((4, 3)) * (1 + 1j), "real numbers, got dtype complex128"),
        (np.array([b"a", b"b"]), "real numbers, got dtype"),
        (np.ones((4, 3), dtype=bool), "real numbers, got dtype bool"),
        (np.ones((3, 4)), r"has shape \(3, 4\).*takes shape \(4, 3\)"),
    ],
)
def test_arrays_of_the_wrong_kind_are_refused(tmp_path, rng, value, match):
    arrays = example_arrays(rng)
    path = tmp_path / "bad.h5"
    write_keras0_sequential(
        path,
        [
            [value, arrays["b"]],
            [],
            [arrays[k] for k in ("gamma", "beta", "mean", "fourth")],
        ],
    )
    refuses(path, match, layer="layer_0", field="param_0")


def test_a_huge_declared_dataset_is_refused_before_reading(tmp_path, rng):
    """A chunked dataset can declare 10**12 values and store none."""
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"d"])
        g = f.create_group("d")
        g.attrs["weight_names"] = np.array([b"d_W"])
        g.create_dataset("d_W", shape=(10**12,), dtype="float32", chunks=(1024,))
    error = refuses(path, "declares shape.*more than the file", layer="d")
    assert error.field == "d_W"


def test_damaged_file_errors_are_one_type(tmp_path, rng, keras0_file):
    """Flipping bytes in the attributes' headers makes h5py raise
    RuntimeError, OSError or KeyError: all become LegacyFileError."""
    data = bytearray(keras0_file.read_bytes())
    offset = data.find(b"nb_layers")
    assert offset > 0
    kinds = set()
    for delta in range(-48, 48, 3):
        damaged = bytearray(data)
        damaged[offset + delta] ^= 0xA5
        path = tmp_path / "damaged.h5"
        path.write_bytes(bytes(damaged))
        try:
            with h5py.File(path, "r") as f:
                dict(f.attrs)
        except Exception as error:
            kinds.add(type(error).__name__)
        model = bn_model()
        before = snapshot(model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                legacy.load_weights(model, path)
        except legacy.LegacyFileError:
            assert_unchanged(model, before)
    # The damage reached h5py's own errors, so the test tests something.
    assert kinds


def test_bad_arguments_are_legacy_file_errors(keras0_file):
    for kwargs, field in (
        ({"running_std": "var"}, "running_std"),
        ({"epsilon": float("inf")}, "epsilon"),
        ({"backend": "cntk"}, "backend"),
        ({"dim_ordering": "channels_first"}, "dim_ordering"),
        ({"keras_version": 1}, "keras_version"),
    ):
        with pytest.raises(legacy.LegacyFileError) as raised:
            legacy.load_weights(bn_model(), keras0_file, **kwargs)
        assert raised.value.field == field and field in str(raised.value)


def test_missing_file_is_also_file_not_found(tmp_path):
    with pytest.raises(legacy.LegacyFileError, match="no file") as raised:
        legacy.read_weights(tmp_path / "absent.h5")
    assert isinstance(raised.value, FileNotFoundError)


def test_keras2_without_a_config_assumes_the_default_epsilon_and_says_so(tmp_path, rng):
    arrays = example_arrays(rng)
    path = tmp_path / "w.h5"
    example("keras2_weights").write(path, arrays)
    with pytest.warns(
        UserWarning, match=r"\['batch_normalization_1'\].*0\.001.*epsilon="
    ):
        legacy.load_weights(bn_model(), path)
    write_keras2(path, [keras2_layer("dense_1", {"kernel": arrays["W"]})])


@pytest.mark.parametrize("limit", [20, 80])
def test_values_in_messages_are_cut_to_their_limit(limit):
    """A value from an untrusted file enters a message as its repr, at most
    ``limit`` characters, the last three of a cut one an ellipsis."""
    from keras_bn.legacy.errors import short_repr

    assert short_repr(["ab"], limit) == "['ab']"
    # Two strings whose list's repr is exactly limit characters: kept whole.
    half = (limit - 8) // 2
    exact = ["a" * half, "b" * (limit - 8 - half)]
    assert len(repr(exact)) == limit and short_repr(exact, limit) == repr(exact)
    long = ["a" * 40, "b" * 40, "c" * 40]
    cut = short_repr(long, limit)
    assert len(cut) == limit
    assert cut == repr(long)[: limit - 3] + "..."


def test_messages_are_plain_text():
    """Keras' own errors, quoted in a message, style names in bold for a
    terminal: the message keeps the words, not the escape codes."""
    error = legacy.LegacyFileError(
        "layer 'a': \x1b[1mDense\x1b[0m got \x1b[1;31mbad\x1b[0m input",
        path="m.json",
    )
    assert str(error) == "m.json: layer 'a': Dense got bad input"


def test_a_config_epsilon_of_zero_is_the_layer_s_own(keras2_model_file):
    from keras_bn.legacy import releases

    config = sequential_config([batch_norm_config("batch_normalization_1", 0)])
    rewrite(
        keras2_model_file,
        lambda f: f.attrs.__setitem__("model_config", json.dumps(config).encode()),
    )
    weights = legacy.read_weights(keras2_model_file)
    source = releases.batch_norm_source(
        weights, "batch_normalization_1", ("auto", None, None)
    )
    assert (source.epsilon, source.epsilon_origin) == (0.0, "config")


# -- every error site, pinned ---------------------------------------------------


def caught(call, *args, **kwargs):
    with pytest.raises(legacy.LegacyFileError) as raised:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(*args, **kwargs)
    return raised.value


def test_a_path_of_the_wrong_type_is_named_as_the_field():
    error = caught(legacy.read_weights, 3)
    assert str(error) == "path: expected a file path, got int."
    assert (error.path, error.layer, error.field) == (None, None, "path")


def test_a_missing_file_is_named_with_its_path(tmp_path):
    path = str(tmp_path / "absent.h5")
    error = caught(legacy.read_weights, path)
    assert isinstance(error, FileNotFoundError)
    assert str(error) == f"path: no file at {path!r}."
    assert (error.layer, error.field) == (None, "path")


def test_a_file_that_is_not_hdf5_is_named(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("plain text")
    error = caught(legacy.read_weights, path)
    assert not isinstance(error, FileNotFoundError)
    assert str(error) == f"{path}: path: {str(path)!r} is not an HDF5 file."
    assert (error.path, error.layer, error.field) == (str(path), None, None)


@pytest.mark.parametrize("member", ["layers", "vars"])
def test_a_keras3_weights_file_is_told_by_its_groups(tmp_path, member):
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group(member)
    error = caught(legacy.read_weights, path)
    assert str(error).startswith(f"{path}: a Keras 3 weights file")
    assert "model.load_weights(path)" in str(error)
    assert (error.layer, error.field) == (None, None)


def test_a_file_of_no_known_layout_lists_the_layouts(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_group("something")
    error = caught(legacy.read_weights, path)
    assert str(error).startswith(
        f"{path}: path: {str(path)!r} holds none of the legacy Keras layouts "
        "(root attribute nb_layers, group graph, attribute layer_names, or group "
        "model_weights)."
    )
    assert (error.layer, error.field) == (None, None)


def test_layer_names_listed_twice_are_each_named_once(tmp_path):
    path = tmp_path / "twice.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"b", b"a", b"b", b"a", b"c"])
        for name in "abc":
            f.create_group(name).attrs["weight_names"] = np.array([])
    error = caught(legacy.read_weights, path)
    assert str(error) == f"{path}: layer_names lists ['a', 'b'] more than once."
    assert (error.layer, error.field) == (None, "layer_names")


def test_a_listed_group_that_is_missing_is_named_as_the_layer(tmp_path):
    path = tmp_path / "missing.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"dense_1"])
    error = caught(legacy.read_weights, path)
    assert str(error) == (
        f"{path}: path: {str(path)!r} lists a group 'dense_1' under '/' that is "
        "missing."
    )
    assert (error.layer, error.field) == ("dense_1", None)


def test_a_model_config_that_is_not_json_is_named(keras2_model_file):
    rewrite(keras2_model_file, lambda f: f.attrs.__setitem__("model_config", "{no"))
    error = refuses(keras2_model_file, "the model_config attribute is not JSON: ")
    assert (error.layer, error.field) == (None, "model_config")


def test_text_that_is_not_utf8_is_named_as_the_attribute(keras2_model_file):
    rewrite(
        keras2_model_file,
        lambda f: f.attrs.__setitem__("keras_version", np.bytes_(b"2.\xff")),
    )
    error = refuses(keras2_model_file, "attribute 'keras_version': expected UTF-8")
    assert r"\xff" in str(error)
    assert (error.layer, error.field) == (None, "keras_version")


def test_a_list_attribute_of_two_dimensions_gives_its_shape(tmp_path):
    path = tmp_path / "grid.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"d"])
        f.create_group("d").attrs["weight_names"] = np.array([[b"d_W", b"d_b"]])
    error = caught(legacy.read_weights, path)
    assert str(error) == (
        f"{path}: attribute 'weight_names' of '/d': expected a list of names, got "
        "an array of shape (1, 2)."
    )
    assert (error.layer, error.field) == (None, "weight_names")


@pytest.mark.parametrize(
    "key, group, value, message",
    [
        ("nb_layers", "/", True,
         "attribute 'nb_layers' of '/': expected a whole number, got True."),
        ("nb_layers", "/", 4,
         "attribute 'nb_layers' of '/' is 4, but '/' holds 3 members."),
        ("nb_params", "layer_0", 3,
         "attribute 'nb_params' of '/layer_0' is 3, but '/layer_0' holds 2 "
         "members."),
        ("nb_params", "layer_0", -1,
         "attribute 'nb_params' of '/layer_0' is -1, but '/layer_0' holds 2 "
         "members."),
        ("nb_params", "layer_0", False,
         "attribute 'nb_params' of '/layer_0': expected a whole number, got "
         "False."),
    ],
)  # fmt: skip
def test_a_count_past_its_group_or_not_a_number_is_refused(
    keras0_file, key, group, value, message
):
    rewrite(keras0_file, lambda f: f[group].attrs.__setitem__(key, value))
    error = caught(legacy.read_weights, keras0_file)
    assert str(error) == f"{keras0_file}: {message}"
    assert (error.layer, error.field) == (None, key)


@pytest.mark.parametrize("count, layers", [(3, 3), (0, 0)])
def test_a_count_up_to_its_group_s_members_is_read(keras0_file, count, layers):
    rewrite(keras0_file, lambda f: f.attrs.__setitem__("nb_layers", count))
    assert len(legacy.read_weights(keras0_file).layers) == layers


def test_a_model_that_is_not_a_layer_is_a_type_error(keras0_file):
    with pytest.raises(TypeError) as raised:
        legacy.load_weights("model", keras0_file)
    assert not isinstance(raised.value, legacy.LegacyFileError)
    assert str(raised.value) == "model: expected a Keras model, got str."


def test_an_unbuilt_model_is_named_as_the_field(keras0_file):
    model = keras.Sequential([keras.layers.Dense(3)], name="unbuilt")
    error = caught(legacy.load_weights, model, keras0_file)
    assert str(error).startswith(f"{keras0_file}: model: 'unbuilt' is not built;")
    assert (error.layer, error.field) == (None, "model")


@pytest.mark.parametrize(
    "epsilon",
    [True, -1e-12, float("inf"), "0.001", {1: 1e-3}, {"bn": -1.0}, {"bn": False}],
)
def test_an_epsilon_argument_out_of_its_range_is_quoted(keras0_file, epsilon):
    error = caught(legacy.load_weights, bn_model(), keras0_file, epsilon=epsilon)
    assert str(error) == (
        f"{keras0_file}: epsilon: expected None, a finite number >= 0, or "
        f"{{layer name: such a number}}, got {epsilon!r}."
    )
    assert (error.layer, error.field) == (None, "epsilon")


@pytest.mark.parametrize("epsilon", [0, 0.0, 1e-3, {"layer_2": 0.0}, {}])
def test_an_epsilon_argument_of_zero_or_more_is_accepted(keras0_file, epsilon):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy.load_weights(bn_model(), keras0_file, epsilon=epsilon)


@pytest.mark.parametrize("version", ["", "1", "v1.0.8", 108])
def test_a_keras_version_argument_that_is_no_version_is_quoted(keras0_file, version):
    error = caught(legacy.load_weights, bn_model(), keras0_file, keras_version=version)
    assert str(error) == (
        f'{keras0_file}: keras_version: expected None or a version such as "1.0.8", '
        f"got {version!r}."
    )
    assert (error.layer, error.field) == (None, "keras_version")


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("running_std", "var", '"auto", "std" or "variance"'),
        ("running_std", None, '"auto", "std" or "variance"'),
        ("backend", "cntk", 'None, "theano" or "tensorflow"'),
        ("dim_ordering", "channels_first", 'None, "th" or "tf"'),
    ],
)
def test_a_choice_argument_lists_its_choices(keras0_file, option, value, expected):
    error = caught(legacy.load_weights, bn_model(), keras0_file, **{option: value})
    assert str(error) == f"{keras0_file}: {option}: expected {expected}, got {value!r}."
    assert (error.layer, error.field) == (None, option)


def test_a_different_number_of_weighted_layers_names_both_lists(keras0_file):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    error = caught(legacy.load_weights, model, keras0_file)
    assert str(error) == (
        f"{keras0_file}: the file holds 2 layers with weights ['layer_0', "
        "'layer_2']; the model has 1 ['d']."
    )
    assert (error.layer, error.field) == (None, None)


def test_a_graph_list_of_another_length_gives_both_counts(tmp_path, rng):
    path = tmp_path / "graph.h5"
    example("keras0_graph").write(path, example_arrays(rng))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    error = caught(legacy.load_weights, model, path)
    assert str(error).startswith(
        f"{path}: the Graph's flat list holds 6 arrays; the model's weighted "
        "layers take 2 ("
    )
    assert (error.layer, error.field) == ("graph", None)


def bn_dense_model():
    return keras.Sequential(
        [
            keras.Input((4,)),
            BatchNormalization(name="b"),
            keras.layers.Dense(3, name="d"),
        ]
    )


@pytest.mark.parametrize(
    "model, layer, message",
    [
        (bn_model, "batch_normalization_1",
         "the file's layer is a BatchNormalization, the model's layer "
         "'batch_normalization' is a BatchNormalization"),
        (bn_dense_model, "dense_1",
         "the file's layer is not a BatchNormalization, the model's layer 'b' is "
         "a BatchNormalization."),
    ],
    ids=["bn-into-bn", "dense-into-bn"],
)  # fmt: skip
def test_a_layer_of_the_other_kind_is_refused(tmp_path, rng, model, layer, message):
    path = tmp_path / "w.h5"
    example("keras2_weights").write(path, example_arrays(rng))
    if model is bn_model:
        dense_dense = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(3, name="d"),
                keras.layers.Dense(3, name="e"),
            ]
        )
        error = caught(legacy.load_weights, dense_dense, path)
        assert str(error) == (
            f"{path}: Layer 'batch_normalization_1': the file's layer is a "
            "BatchNormalization, the model's layer 'e' is a Dense."
        )
    else:
        error = caught(legacy.load_weights, model(), path)
        assert str(error) == f"{path}: Layer '{layer}': {message}"
    assert (error.layer, error.field) == (layer, None)


def keras2_bn_file(path, rng, roles):
    arrays = {role: rng.uniform(0.5, 1.5, 3) for role in roles}
    write_keras2(path, [keras2_layer("bn", arrays)])
    return path


def one_bn_model(**kwargs):
    return keras.Sequential(
        [keras.Input((3,)), BatchNormalization(name="bn", **kwargs)]
    )


def test_an_array_that_is_no_batch_norm_role_lists_the_names(tmp_path, rng):
    path = keras2_bn_file(
        tmp_path / "w.h5",
        rng,
        ["gamma", "beta", "moving_mean", "extra", "moving_variance"],
    )
    error = caught(legacy.load_weights, one_bn_model(), path)
    assert str(error) == (
        f"{path}: Layer 'bn': expected BatchNormalization arrays (gamma, beta, "
        "running_mean/moving_mean, running_std/moving_variance), got "
        "['bn/gamma:0', 'bn/beta:0', 'bn/moving_mean:0', 'bn/extra:0', "
        "'bn/moving_variance:0']."
    )
    assert (error.layer, error.field) == ("bn", None)


def test_a_running_statistic_without_the_other_is_refused(tmp_path, rng):
    path = keras2_bn_file(tmp_path / "w.h5", rng, ["gamma", "beta", "moving_variance"])
    error = caught(legacy.load_weights, one_bn_model(), path)
    assert str(error) == (
        f"{path}: Layer 'bn': the file holds ['bn/gamma:0', 'bn/beta:0', "
        "'bn/moving_variance:0'], which has one running statistic without the "
        "other."
    )
    assert (error.layer, error.field) == ("bn", None)


@pytest.mark.parametrize(
    "roles, option, message",
    [
        (["gamma", "beta", "moving_mean", "moving_variance"], "scale",
         "the file holds gamma, but the model's layer 'bn' has scale=False."),
        (["gamma", "beta", "moving_mean", "moving_variance"], "center",
         "the file holds beta, but the model's layer 'bn' has center=False."),
        (["beta", "moving_mean", "moving_variance"], None,
         "the file has no gamma, but the model's layer 'bn' has scale=True."),
        (["gamma", "moving_mean", "moving_variance"], None,
         "the file has no beta, but the model's layer 'bn' has center=True."),
    ],
)  # fmt: skip
def test_gamma_and_beta_must_match_scale_and_center(
    tmp_path, rng, roles, option, message
):
    path = keras2_bn_file(tmp_path / "w.h5", rng, roles)
    model = one_bn_model(**({option: False} if option else {}))
    error = caught(legacy.load_weights, model, path)
    assert str(error) == f"{path}: Layer 'bn': {message}"
    field = "gamma" if "gamma" in message else "beta"
    assert (error.layer, error.field) == ("bn", field)


@pytest.mark.parametrize("count", [1, 3, 5])
def test_a_keras0_batch_norm_of_neither_2_nor_4_arrays_gives_its_count(
    tmp_path, rng, count
):
    path = tmp_path / "w.h5"
    write_keras0_sequential(path, [[rng.uniform(0.5, 1.5, 3)] * count])
    error = caught(legacy.load_weights, one_bn_model(), path)
    assert str(error).startswith(
        f"{path}: Layer 'layer_0': a Keras 0.x BatchNormalization holds 4 arrays"
    )
    assert str(error).endswith(f"; the file holds {count}.")
    assert (error.layer, error.field) == ("layer_0", None)


@pytest.mark.parametrize("count", [2, 4])
def test_a_keras0_batch_norm_of_2_or_4_arrays_loads(tmp_path, rng, count):
    path = tmp_path / "w.h5"
    write_keras0_sequential(path, [[rng.uniform(0.5, 1.5, 3)] * count])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy.load_weights(one_bn_model(), path)


def test_a_plain_layer_of_another_array_count_lists_the_file_s(keras0_file):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, use_bias=False, name="d"),
            BatchNormalization(name="bn"),
        ]
    )
    error = caught(legacy.load_weights, model, keras0_file)
    assert str(error) == (
        f"{keras0_file}: Layer 'layer_0': the file holds 2 arrays ['param_0', "
        "'param_1'], the model's layer 'd' takes 1."
    )
    assert (error.layer, error.field) == ("layer_0", None)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_fourth_array_is_named(tmp_path, rng, value):
    arrays = example_arrays(rng)
    arrays["fourth"] = arrays["fourth"].copy()
    arrays["fourth"][1] = value
    path = tmp_path / "w.h5"
    example("keras0_sequential").write(path, arrays)
    error = caught(legacy.load_weights, bn_model(), path)
    assert str(error) == (
        f"{path}: Layer 'layer_2': array 'param_3' must be finite, got non-finite "
        "values."
    )
    assert (error.layer, error.field) == ("layer_2", "param_3")


def keras1_weights_file(tmp_path, rng):
    path = tmp_path / "w.h5"
    example("keras1_weights_variance").write(path, example_arrays(rng))
    return path


def test_a_variance_without_a_known_epsilon_asks_for_it(tmp_path, rng):
    """Keras' variance releases differ in their default epsilon: a Keras 1.x
    weights file told to hold variances still needs it."""
    path = keras1_weights_file(tmp_path, rng)
    error = caught(legacy.load_weights, bn_model(), path, running_std="variance")
    assert str(error).startswith(
        f"{path}: epsilon: the file does not record the epsilon of "
        "'batchnormalization_1' and its Keras version is unknown;"
    )
    assert "1.0.8 to 1.1.x: 1e-5, 1.2.x: 1e-3" in str(error)
    assert (error.layer, error.field) == ("batchnormalization_1", "epsilon")


def test_a_std_without_a_known_version_assumes_1e_6_and_says_so(tmp_path, rng):
    """Every Keras that kept a std used epsilon 1e-6 (docs/legacy.md)."""
    path = keras1_weights_file(tmp_path, rng)
    (message,) = recorded(bn_model(), path, running_std="std")
    assert "['batchnormalization_1']; assumed the release's default 1e-06." in message


def test_a_keras1_weights_file_without_a_version_asks_for_running_std(tmp_path, rng):
    path = keras1_weights_file(tmp_path, rng)
    error = caught(legacy.load_weights, bn_model(), path)
    assert str(error).startswith(
        f"{path}: running_std: {str(path)!r} is a Keras 1.x weights file, which "
        "does not record its Keras version"
    )
    assert (error.layer, error.field) == (None, "running_std")


def read_keras1(tmp_path, rng, backend):
    """A Keras 1.x weights file whose backend is as given (None: its names,
    all param_n, do not tell)."""
    from keras_bn.legacy.reading import LegacyWeights

    return LegacyWeights(
        str(tmp_path / "w.h5"), "keras1", None, backend, False, None, ()
    )


@pytest.mark.parametrize("version", ["1.0.6", "1.0.7"])
def test_a_release_whose_form_depended_on_the_backend_needs_it(tmp_path, rng, version):
    from keras_bn.legacy import releases

    weights = read_keras1(tmp_path, rng, None)
    with pytest.raises(legacy.LegacyFileError) as raised:
        releases.source_form(weights, "auto", version)
    assert str(raised.value).startswith(
        f"{weights.path}: running_std: Keras {version} kept a std with Theano and "
        "a variance with TensorFlow, and this file does not tell its backend."
    )
    assert (raised.value.layer, raised.value.field) == (None, "running_std")


@pytest.mark.parametrize(
    "version, backend, expected",
    [
        ("1.0.5", None, ("std", 1e-6)),
        ("1.0.6", "theano", ("std", 1e-6)),
        ("1.0.6", "tensorflow", ("variance", 1e-6)),
        ("1.0.7", "theano", ("theano_variance", 1e-6)),
        ("1.0.7", "tensorflow", ("variance", 1e-6)),
        ("1.0.8", None, ("variance", 1e-5)),
        ("1.1.2", None, ("variance", 1e-5)),
        ("1.2.0", None, ("variance", 1e-3)),
    ],
)
def test_each_release_s_form_and_default_epsilon(
    tmp_path, rng, version, backend, expected
):
    """docs/legacy.md: a std up to 1.0.5 and with Theano in 1.0.6, epsilon
    outside the root with Theano in 1.0.7, a variance from 1.0.8; epsilon
    1e-6 up to 1.0.7, 1e-5 to 1.1.x, 1e-3 from 1.2."""
    from keras_bn.legacy import releases

    weights = read_keras1(tmp_path, rng, backend)
    assert releases.source_form(weights, "auto", version) == expected


def config_weights(config, class_name="BatchNormalization"):
    from keras_bn.legacy.reading import LegacyWeights

    return LegacyWeights(
        "m.h5", "keras2", "2.2.4", "tensorflow", True, {}, (),
        {"bn": (class_name, {"name": "bn", **config})},
    )  # fmt: skip


@pytest.mark.parametrize("mode", [True, False, 3, -1, "0", 1.5, None])
def test_a_config_mode_other_than_0_1_2_is_refused(mode):
    from keras_bn.legacy import releases

    weights = config_weights({"mode": mode, "epsilon": 1e-3})
    with pytest.raises(legacy.LegacyFileError) as raised:
        releases.batch_norm_source(weights, "bn", ("auto", None, None))
    assert str(raised.value) == (
        f"m.h5: Layer 'bn': the model config's 'mode' must be 0, 1 or 2, got {mode!r}."
    )
    assert (raised.value.layer, raised.value.field) == ("bn", "mode")


@pytest.mark.parametrize("mode", [0, 1, 2, 1.0])
def test_a_config_mode_of_0_1_or_2_is_read(mode):
    from keras_bn.legacy import releases

    weights = config_weights({"mode": mode, "epsilon": 1e-3})
    source = releases.batch_norm_source(weights, "bn", ("auto", None, None))
    assert source.mode == int(mode) and type(source.mode) is int


@pytest.mark.parametrize(
    "class_name", ["BatchNormalization", "keras_bn>BatchNormalization"]
)
@pytest.mark.parametrize("epsilon", [True, float("inf"), 10**400, "1e-3", [1e-3]])
def test_a_config_epsilon_that_is_no_finite_number_is_refused(class_name, epsilon):
    from keras_bn.legacy import releases

    weights = config_weights({"epsilon": epsilon}, class_name)
    with pytest.raises(legacy.LegacyFileError) as raised:
        releases.batch_norm_source(weights, "bn", ("auto", None, None))
    assert str(raised.value).startswith(
        "m.h5: Layer 'bn': the model config's 'epsilon' must be a finite number "
        ">= 0, got "
    )
    assert (raised.value.layer, raised.value.field) == ("bn", "epsilon")


@pytest.mark.parametrize(
    "mode, target, kind",
    [(2, "keras_bn", "batch statistics at inference"), (1, "stock", "samplewise"),
     (2, "stock", "batch statistics at inference")],
)  # fmt: skip
def test_a_config_mode_the_model_does_not_compute_is_refused(
    tmp_path, rng, mode, target, kind
):
    arrays = example_arrays(rng)
    path = tmp_path / "m.h5"
    config = sequential_config(
        [{"class_name": "BatchNormalization",
          "config": {"name": "batchnormalization_1", "epsilon": 1e-3, "mode": mode}}]
    )  # fmt: skip
    example("keras1_model_1.2.2").write(path, arrays)
    rewrite(path, lambda f: f.attrs.__setitem__("model_config", json.dumps(config)))
    error = caught(legacy.load_weights, bn_model(target), path)
    assert str(error) == (
        f"{path}: Layer 'batchnormalization_1': the file's layer has mode={mode} "
        f"({kind}), the model's layer 'batch_normalization' (BatchNormalization) "
        "computes mode=0."
    )
    assert (error.layer, error.field) == ("batchnormalization_1", "mode")


# -- warnings -------------------------------------------------------------------


def recorded(model, path, **kwargs):
    with warnings.catch_warnings(record=True) as found:
        warnings.simplefilter("always")
        legacy.load_weights(model, path, **kwargs)
    return [str(w.message) for w in found if issubclass(w.category, UserWarning)]


def test_the_assumed_epsilon_warning_is_given_once(tmp_path, rng):
    path = tmp_path / "w.h5"
    example("keras2_weights").write(path, example_arrays(rng))
    (message,) = recorded(bn_model(), path)
    assert message.startswith(
        f"{path}: the file does not record the epsilon of the BatchNormalization "
        "layers ['batch_normalization_1']; assumed the release's default 0.001."
    )


@pytest.mark.parametrize(
    "epsilon", [1e-3, 0.0, {"batch_normalization_1": 1e-3}, {"batch_normalization": 0}]
)
def test_no_epsilon_warning_where_the_caller_gives_it(tmp_path, rng, epsilon):
    path = tmp_path / "w.h5"
    example("keras2_weights").write(path, example_arrays(rng))
    assert recorded(bn_model(), path, epsilon=epsilon) == []


def test_no_epsilon_warning_where_the_config_records_it(tmp_path, rng):
    path = tmp_path / "m.h5"
    example("keras2_model").write(path, example_arrays(rng))
    assert recorded(bn_model(), path) == []


@pytest.mark.parametrize("name", ["keras0_sequential_0.1", "keras0_graph_0.2"])
def test_statistics_never_saved_are_named_once(tmp_path, rng, name):
    path = tmp_path / "w.h5"
    example(name).write(path, example_arrays(rng))
    model = dense_bn_model("keras_bn")
    (message,) = recorded(model, path)
    assert message.startswith(
        f"{path}: the BatchNormalization layers ['bn'] saved only gamma and beta"
    )
    assert "keras_bn.recompute_statistics(model, data)" in message


def test_keras1_samplewise_formula_is_said_once_and_not_for_keras0(tmp_path, rng):
    arrays = example_arrays(rng)
    path = tmp_path / "m.h5"
    config = sequential_config(
        [{"class_name": "BatchNormalization",
          "config": {"name": "batchnormalization_1", "epsilon": 1e-3, "mode": 1}}]
    )  # fmt: skip
    example("keras1_model_1.2.2").write(path, arrays)
    rewrite(path, lambda f: f.attrs.__setitem__("model_config", json.dumps(config)))
    (message,) = recorded(dense_bn_model("keras_bn", mode=1), path)
    assert message == (
        f"{path}: Keras 1.x normalized samplewise (mode 1) with (x - m) / "
        "(sqrt(var + epsilon) + epsilon); the layers ['bn'] now do too "
        "(samplewise_epsilon_in_root=True)."
    )
    keras0 = tmp_path / "keras0.h5"
    example("keras0_sequential").write(keras0, arrays)
    messages = recorded(dense_bn_model("keras_bn", mode=1), keras0)
    assert not any("Keras 1.x normalized" in m for m in messages)


def test_a_shape_that_does_not_fit_names_both_layers(tmp_path, rng):
    """The file's layer and array, the model's layer, and both shapes."""
    path = tmp_path / "w.h5"
    example("keras0_sequential").write(path, example_arrays(rng))
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, name="narrow"), BatchNormalization()]
    )
    before = snapshot(model)
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_weights(model, path)
    assert_unchanged(model, before)
    assert (caught.value.layer, caught.value.field) == ("layer_0", "param_0")
    assert str(caught.value) == (
        f"{path}: Layer 'layer_0': array 'param_0' has shape (4, 3), the model's "
        "layer 'narrow' takes shape (4, 2)."
    )
