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
