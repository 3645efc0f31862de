"""keras_bn.legacy: every legacy layout, written with h5py, loaded, and its
predictions checked against the NumPy statement of the source version's
formula."""

import os
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from conftest import dtype_scope, to_numpy
from legacy_fixtures import (
    EXAMPLES,
    batch_norm_config,
    example_arrays,
    keras1_layer,
    keras2_layer,
    sequential_config,
    write_keras0_graph,
    write_keras0_sequential,
    write_keras1,
    write_keras2,
)
from reference import seed_featurewise, variance_form

from keras_bn import BatchNormalization, legacy

TARGETS = ["keras_bn", "stock"]


def example_model(target, dtype="float32", epsilon=None):
    """Dense(4 -> 3), ReLU, BatchNormalization: the legacy examples' model."""
    if target == "keras_bn":
        batch_norm = BatchNormalization(
            **({} if epsilon is None else {"epsilon": epsilon}), dtype=dtype
        )
    else:
        batch_norm = keras.layers.BatchNormalization(
            **({} if epsilon is None else {"epsilon": epsilon}), dtype=dtype
        )
    return keras.Sequential(
        [
            keras.Input((4,), dtype=dtype),
            keras.layers.Dense(3, dtype=dtype),
            keras.layers.Activation("relu", dtype=dtype),
            batch_norm,
        ]
    )


def expected_output(x, arrays, form, epsilon):
    """The source's inference output, from its own formula."""
    h = np.maximum(x @ arrays["W"] + arrays["b"], 0.0)
    g, b, m, a = (arrays[k] for k in ("gamma", "beta", "mean", "fourth"))
    if form == "std":
        return seed_featurewise(h, g, b, m, a, epsilon)
    if form == "variance":
        return variance_form(h, g, b, m, a, epsilon)
    assert form == "theano_variance"
    return seed_featurewise(h, g, b, m, np.sqrt(a), epsilon)


def all_weights(model):
    return [w.copy() for w in model.get_weights()]


def assert_unchanged(model, before):
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


@pytest.fixture
def arrays(rng):
    return example_arrays(rng)


# -- every layout, both targets -------------------------------------------------

WITH_STATISTICS = [e for e in EXAMPLES if e.form is not None]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("example", WITH_STATISTICS, ids=lambda e: e.name)
def test_predictions_match_the_source_formula(tmp_path, rng, arrays, example, target):
    path = tmp_path / f"{example.name}.h5"
    example.write(path, arrays)
    model = example_model(target)
    legacy.load_weights(model, path, **example.load_kwargs)
    x = rng.normal(size=(16, 4))
    np.testing.assert_allclose(
        to_numpy(model(x.astype("float32"), training=False)),
        expected_output(x, arrays, example.form, example.epsilon),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("example", WITH_STATISTICS, ids=lambda e: e.name)
def test_conversion_is_exact_in_float64(tmp_path, rng, arrays, example, target):
    path = tmp_path / "weights.h5"
    example.write(path, arrays)
    x = rng.normal(size=(64, 4))
    with dtype_scope("float64"):
        # A target epsilon unlike the source's: both enter the conversion.
        model = example_model(target, "float64", epsilon=0.05)
        legacy.load_weights(model, path, **example.load_kwargs)
        y = to_numpy(model(x, training=False))
    expected = expected_output(x, arrays, example.form, example.epsilon)
    assert np.max(np.abs(y - expected)) <= 1e-6 * max(1.0, np.max(np.abs(expected)))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    "example", [e for e in EXAMPLES if e.form is None], ids=lambda e: e.name
)
def test_files_without_running_statistics_warn_and_keep_them(
    tmp_path, arrays, example, target
):
    path = tmp_path / "weights.h5"
    example.write(path, arrays)
    model = example_model(target)
    before = model.layers[-1].get_weights()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy.load_weights(model, path)
    # One warning: no running statistics, so no epsilon was assumed for them.
    (warning,) = [str(w.message) for w in caught if str(path) in str(w.message)]
    assert "recompute_statistics" in warning and "epsilon" not in warning
    gamma, beta, mean, fourth = model.layers[-1].get_weights()
    np.testing.assert_allclose(gamma, arrays["gamma"], rtol=1e-6)
    np.testing.assert_allclose(beta, arrays["beta"], rtol=1e-6)
    np.testing.assert_array_equal(mean, before[2])
    np.testing.assert_array_equal(fourth, before[3])
    np.testing.assert_allclose(model.layers[0].get_weights()[0], arrays["W"], rtol=1e-6)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_read_weights_reports_format_version_and_arrays(tmp_path, arrays, example):
    path = tmp_path / "weights.h5"
    example.write(path, arrays)
    weights = legacy.read_weights(path)
    assert weights.format == example.format
    assert weights.keras_version == example.keras_version
    assert weights.path == os.fspath(path)
    written = [arrays["W"], arrays["b"], arrays["gamma"], arrays["beta"]]
    if example.form is not None:
        written += [arrays["mean"], arrays["fourth"]]
    held = [a for layer in weights.layers for a in layer.arrays]
    assert len(held) == len(written)
    for got, want in zip(held, written):
        np.testing.assert_array_equal(got, want)


def test_read_weights_names_layers_and_arrays(tmp_path, arrays):
    path = tmp_path / "weights.h5"
    EXAMPLES[[e.name for e in EXAMPLES].index("keras2_weights_split")].write(
        path, arrays
    )
    weights = legacy.read_weights(path)
    assert [layer.name for layer in weights.layers] == [
        "dense_1",
        "activation_1",
        "batch_normalization_1",
    ]
    assert weights.layers[1].arrays == ()
    assert (
        weights.layers[2].weight_names[3] == "batch_normalization_1/moving_variance:0"
    )
    assert weights.backend == "tensorflow" and not weights.whole_model


def test_keras1_backend_is_told_by_the_weight_names(tmp_path, arrays):
    for backend in ("theano", "tensorflow"):
        path = tmp_path / f"{backend}.h5"
        write_keras1(path, [keras1_layer("d", {"W": arrays["W"]}, backend=backend)])
        assert legacy.read_weights(path).backend == backend


def test_whole_model_file_reports_its_config(tmp_path, arrays):
    path = tmp_path / "model.h5"
    config = sequential_config([batch_norm_config("bn", 0.5)])
    write_keras2(path, [], model_config=config)
    weights = legacy.read_weights(path)
    assert weights.whole_model and weights.model_config == config


# -- shapes of the seed's era ---------------------------------------------------


@pytest.mark.parametrize("epsilon", [None, 1e-3])
def test_keras0_batch_norm_of_the_full_sample_shape(tmp_path, rng, epsilon):
    shape = (2, 3, 4)
    weights = [
        rng.uniform(0.5, 1.5, shape),
        rng.normal(size=shape),
        rng.normal(size=shape),
        rng.uniform(0.5, 2.0, shape),
    ]
    path = tmp_path / "seed.h5"
    write_keras0_sequential(path, [weights])
    model = keras.Sequential([BatchNormalization(shape, epsilon=0.1)])
    kwargs = {} if epsilon is None else {"epsilon": epsilon}
    legacy.load_weights(model, path, **kwargs)
    x = rng.normal(size=(5, *shape))
    np.testing.assert_allclose(
        to_numpy(model(x.astype("float32"))),
        seed_featurewise(x, *weights, 1e-6 if epsilon is None else epsilon),
        rtol=1e-5,
        atol=1e-5,
    )


def test_keras2_without_scale_or_center(tmp_path, rng):
    beta, mean, variance = rng.normal(size=3), rng.normal(size=3), rng.uniform(1, 2, 3)
    path = tmp_path / "weights.h5"
    write_keras2(
        path,
        [
            keras2_layer(
                "bn", {"beta": beta, "moving_mean": mean, "moving_variance": variance}
            )
        ],
    )
    model = keras.Sequential([keras.Input((3,)), BatchNormalization(scale=False)])
    legacy.load_weights(model, path)
    x = rng.normal(size=(4, 3))
    np.testing.assert_allclose(
        to_numpy(model(x.astype("float32"))),
        variance_form(x, 1.0, beta, mean, variance, 1e-3),
        rtol=1e-5,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="has no gamma.*scale=True"):
        legacy.load_weights(
            keras.Sequential([keras.Input((3,)), BatchNormalization()]), path
        )


def test_nested_models_are_flattened(tmp_path, rng, arrays):
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Activation("relu")]
    )
    inputs = keras.Input((4,))
    model = keras.Model(inputs, BatchNormalization()(inner(inputs)))
    legacy.load_weights(model, path)
    x = rng.normal(size=(8, 4))
    np.testing.assert_allclose(
        to_numpy(model(x.astype("float32"))),
        expected_output(x, arrays, "std", 1e-6),
        rtol=1e-5,
        atol=1e-5,
    )


def test_a_keras3_legacy_h5_file_from_the_stock_layer(tmp_path, rng):
    """Keras 3 still writes the old layout (model.save('*.h5')): a stock
    BatchNormalization's weights, into a keras_bn model, predict the same."""
    stock = example_model("stock", epsilon=0.01)
    bn = stock.layers[-1]
    bn.set_weights(
        [
            rng.uniform(0.5, 1.5, 3),
            rng.normal(size=3),
            rng.normal(size=3),
            rng.uniform(0.5, 2.0, 3),
        ]
    )
    path = tmp_path / "stock.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock.save(path)
    assert legacy.read_weights(path).keras_version == keras.__version__
    model = example_model("keras_bn")
    legacy.load_weights(model, path)
    x = rng.normal(size=(16, 4)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(model(x)), to_numpy(stock(x)), rtol=1e-5, atol=1e-5
    )


# -- what the file cannot tell ----------------------------------------------------


def test_keras1_weights_file_asks_for_running_std(tmp_path, arrays):
    path = tmp_path / "weights.h5"
    write_keras1(path, [*_keras1_example_layers(arrays)])
    model = example_model("keras_bn")
    before = all_weights(model)
    with pytest.raises(ValueError, match='running_std="std" or running_std="variance"'):
        legacy.load_weights(model, path)
    with pytest.raises(ValueError, match="epsilon"):
        legacy.load_weights(model, path, running_std="variance")
    assert_unchanged(model, before)


def _keras1_example_layers(arrays):
    return [
        keras1_layer("dense_1", {"W": arrays["W"], "b": arrays["b"]}),
        keras1_layer(
            "bn",
            {
                "gamma": arrays["gamma"],
                "beta": arrays["beta"],
                "running_mean": arrays["mean"],
                "running_std": arrays["fourth"],
            },
        ),
    ]


@pytest.mark.parametrize(
    "running_std, form", [("std", "std"), ("variance", "variance")]
)
def test_keras_1_0_6_needs_the_backend(tmp_path, rng, arrays, running_std, form):
    """Keras 1.0.6 kept a std with Theano and a variance with TensorFlow; a
    file with unnamed arrays cannot tell which."""
    path = tmp_path / "weights.h5"
    names = ("gamma", "beta", "mean", "fourth")
    layers = [("bn", [(f"param_{i}", arrays[k]) for i, k in enumerate(names)])]
    write_keras1(path, layers, keras_version="1.0.6")
    model = keras.Sequential([keras.Input((3,)), BatchNormalization()])
    with pytest.raises(ValueError, match="does not tell its backend"):
        legacy.load_weights(model, path)
    legacy.load_weights(model, path, running_std=running_std)
    x = rng.normal(size=(8, 3))
    g, b, m, a = (arrays[k] for k in names)
    reference = seed_featurewise if form == "std" else variance_form
    np.testing.assert_allclose(
        to_numpy(model(x.astype("float32"))),
        reference(x, g, b, m, a, 1e-6),
        rtol=1e-5,
        atol=1e-5,
    )


# -- bad input ----------------------------------------------------------------------


@pytest.fixture
def loaded_model(tmp_path, arrays):
    """A model with weights of its own, to check that failures leave it be."""
    model = example_model("keras_bn")
    path = tmp_path / "good.h5"
    EXAMPLES[0].write(path, arrays)
    legacy.load_weights(model, path)
    return model


def test_not_hdf5(tmp_path, loaded_model):
    path = tmp_path / "notes.h5"
    path.write_text("not an HDF5 file")
    before = all_weights(loaded_model)
    with pytest.raises(ValueError, match="not an HDF5 file"):
        legacy.load_weights(loaded_model, path)
    assert_unchanged(loaded_model, before)


def test_truncated_file(tmp_path, arrays, loaded_model):
    path = tmp_path / "truncated.h5"
    EXAMPLES[0].write(path, arrays)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = all_weights(loaded_model)
    with pytest.raises(ValueError, match="truncated or damaged"):
        legacy.load_weights(loaded_model, path)
    assert_unchanged(loaded_model, before)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        legacy.read_weights(tmp_path / "absent.h5")


def test_unknown_layout(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(ValueError, match="none of the legacy Keras layouts"):
        legacy.read_weights(path)


def test_listed_group_missing(tmp_path):
    path = tmp_path / "broken.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"dense_1"])
    with pytest.raises(ValueError, match="'dense_1'.*missing"):
        legacy.read_weights(path)


def test_layer_count_mismatch(tmp_path, arrays, loaded_model):
    path = tmp_path / "short.h5"
    write_keras0_sequential(path, [[arrays["W"], arrays["b"]]])
    before = all_weights(loaded_model)
    with pytest.raises(ValueError, match="1 layers with weights.*the model has 2"):
        legacy.load_weights(loaded_model, path)
    assert_unchanged(loaded_model, before)


def test_graph_count_mismatch(tmp_path, arrays, loaded_model):
    path = tmp_path / "graph.h5"
    write_keras0_graph(path, [arrays["W"], arrays["b"], arrays["gamma"]])
    with pytest.raises(ValueError, match="holds 3 arrays"):
        legacy.load_weights(loaded_model, path)


def test_shape_mismatch_names_layer_and_array(tmp_path, arrays, loaded_model):
    path = tmp_path / "shape.h5"
    write_keras2(
        path,
        [
            keras2_layer("dense_1", {"kernel": arrays["W"], "bias": arrays["b"]}),
            keras2_layer(
                "bn",
                {
                    "gamma": np.ones(4),
                    "beta": np.zeros(4),
                    "moving_mean": np.zeros(4),
                    "moving_variance": np.ones(4),
                },
            ),
        ],
    )
    before = all_weights(loaded_model)
    with pytest.raises(ValueError, match=r"Layer 'bn': array 'bn/gamma:0' has shape"):
        legacy.load_weights(loaded_model, path)
    assert_unchanged(loaded_model, before)


@pytest.mark.parametrize("where", ["dense", "batch_norm"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_arrays_name_layer_and_array(
    tmp_path, arrays, loaded_model, where, value
):
    bad = dict(arrays)
    key = "W" if where == "dense" else "fourth"
    bad[key] = bad[key].copy()
    bad[key].flat[1] = value
    path = tmp_path / "nan.h5"
    EXAMPLES[0].write(path, bad)
    before = all_weights(loaded_model)
    name = (
        "layer_0': array 'param_0" if where == "dense" else "layer_2': array 'param_3"
    )
    with pytest.raises(ValueError, match=f"{name}' must be finite"):
        legacy.load_weights(loaded_model, path)
    assert_unchanged(loaded_model, before)


def test_layer_kind_mismatch(tmp_path, arrays):
    path = tmp_path / "kinds.h5"
    EXAMPLES[[e.name for e in EXAMPLES].index("keras2_weights")].write(path, arrays)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(3)]
    )
    before = all_weights(model)
    with pytest.raises(ValueError, match="is a BatchNormalization.*Dense"):
        legacy.load_weights(model, path)
    assert_unchanged(model, before)


def test_negative_converted_std_is_refused(tmp_path, arrays):
    tiny = dict(arrays, fourth=np.zeros(3))
    path = tmp_path / "tiny.h5"
    EXAMPLES[0].write(path, tiny)
    model = example_model("keras_bn", epsilon=0.5)
    before = all_weights(model)
    with pytest.raises(ValueError, match="running_std would be negative"):
        legacy.load_weights(model, path)
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"running_std": "var"}, "running_std"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"epsilon": "1e-3"}, "epsilon"),
        # A bool is an int to Python, not an epsilon to anyone.
        ({"epsilon": True}, "epsilon"),
        ({"epsilon": {"layer_2": False}}, "epsilon"),
        ({"epsilon": float("inf")}, "epsilon"),
        ({"keras_version": "one"}, "keras_version"),
    ],
)
def test_bad_options(tmp_path, arrays, kwargs, match):
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    with pytest.raises(ValueError, match=match):
        legacy.load_weights(example_model("keras_bn"), path, **kwargs)


def test_unbuilt_model(tmp_path, arrays):
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    model = keras.Sequential([keras.layers.Dense(3), BatchNormalization()])
    with pytest.raises(ValueError, match="not built"):
        legacy.load_weights(model, path)


@pytest.mark.parametrize(
    "version, form",
    [((1, 0, 8), "variance"), ((1, 1, 0), "variance"), ((1, 0, 5), "std")],
)
def test_from_1_0_8_every_backend_kept_a_variance(version, form):
    """Keras 1.0.8 on, the fourth array is a variance whatever the backend:
    a file that does not record one needs no running_std (docs/legacy.md)."""
    from keras_bn.legacy.releases import version_form

    assert version_form(version, None, ".".join(map(str, version))) == form


def test_an_epsilon_passed_is_not_reported_as_assumed():
    """The warning about an assumed default epsilon names the layers whose
    epsilon was assumed; one passed by the caller is not."""
    import warnings
    from pathlib import Path

    real = Path(__file__).resolve().parent / "fixtures" / "real" / "keras-1.0.8-theano"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(
            real / "dense.json", weights=real / "dense.weights.h5"
        )
    weights = real / "dense.weights.h5"
    for epsilon, warned in (
        (None, True),
        (1e-5, False),
        ({"batchnormalization_1": 1e-5}, True),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            legacy.load_weights(model, weights, keras_version="1.0.8", epsilon=epsilon)
        assumed = [w for w in caught if "does not record the epsilon" in str(w.message)]
        assert bool(assumed) == warned, (epsilon, [str(w.message) for w in caught])
        if isinstance(epsilon, dict):
            assert "batchnormalization_1'" not in str(assumed[0].message)


@pytest.mark.parametrize(
    "weight_name, owner",
    [
        ("block_bn_gamma", "block_bn"),  # not "block": the longest name wins
        ("block_W", "block"),
        ("block_bn/gamma:0", "block_bn"),  # Keras 2: the path tells
        ("other_W", None),
    ],
)
def test_a_nested_models_array_goes_to_the_layer_that_owns_it(weight_name, owner):
    """Keras 1 saved a nested model's arrays in one group, each named after
    its layer and ``_``: where one layer's name starts another's
    (``block``, ``block_bn``), an array goes to the longest name it starts
    with."""
    from keras_bn.legacy.assign import _owner

    assert _owner(weight_name, {"block", "block_bn"}) == owner


@pytest.mark.parametrize(
    "version, epsilon",
    # BatchNormalization's default epsilon in each release's signature:
    # 1e-6 up to 1.0.7, 1e-5 from 1.0.8, 1e-3 from 1.2.0 (as Keras 2 kept it).
    [((1, 0, 7), 1e-6), ((1, 0, 8), 1e-5), ((1, 1, 2), 1e-5),
     ((1, 2, 0), 1e-3), ((1, 2, 2), 1e-3), ((2, 2, 4), 1e-3)],
)  # fmt: skip
def test_each_releases_default_epsilon(version, epsilon):
    from keras_bn.legacy.releases import version_epsilon

    assert version_epsilon(version) == epsilon


# -- the package's lazy names ------------------------------------------------------


def test_the_package_lists_its_lazy_names():
    """dir() of keras_bn.legacy names load_model and load_weights, which
    load on first use (they import Keras), with the rest, in sorted
    order."""
    names = dir(legacy)
    assert names == sorted(names)
    assert {"load_model", "load_weights", "read_weights", "LegacyFileError"} <= set(
        names
    )


@pytest.mark.parametrize(
    "missing, raised, message",
    [
        ("torch", ImportError, "keras_bn.legacy.load_model: Keras cannot import its "
                               "backend (torch, "),
        ("h5py_plugins", ModuleNotFoundError, "No module named 'h5py_plugins'"),
    ],
    ids=["backend", "another-module"],
)  # fmt: skip
def test_a_lazy_name_without_the_backend(monkeypatch, missing, raised, message):
    """load_model imports Keras on first use: a missing backend becomes one
    ImportError of advice; any other missing module is raised as it is."""
    import importlib

    def import_module(name, *args, **kwargs):
        raise ModuleNotFoundError(f"No module named '{missing}'", name=missing)

    monkeypatch.delitem(vars(legacy), "load_model", raising=False)
    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(raised) as caught:
        legacy.load_model  # noqa: B018
    assert type(caught.value) is raised
    assert str(caught.value).startswith(message)


# -- reading: unusual and damaged attributes and arrays ------------------------------


def test_a_path_that_is_not_a_path(tmp_path):
    """A number for the path: a LegacyFileError naming the argument, not
    os.fspath's TypeError."""
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.read_weights(3.5)
    assert caught.value.field == "path"
    assert str(caught.value) == "path: expected a file path, got float."


def test_counts_and_versions_stored_as_one_element_arrays(tmp_path, arrays):
    """Some writers stored a scalar attribute as an array of one element:
    ``nb_layers`` [3] counts 3 layers, ``keras_version`` [b"2.2.4"] is
    "2.2.4"."""
    path = tmp_path / "keras0.h5"
    EXAMPLES[0].write(path, arrays)
    with h5py.File(path, "r+") as f:
        f.attrs["nb_layers"] = np.array([3])
    assert [layer.name for layer in legacy.read_weights(path).layers] == [
        "layer_0",
        "layer_1",
        "layer_2",
    ]
    path = tmp_path / "keras2.h5"
    write_keras2(path, [keras2_layer("d", {"kernel": arrays["W"]})])
    with h5py.File(path, "r+") as f:
        f.attrs["keras_version"] = np.array([b"2.2.4"])
    read = legacy.read_weights(path)
    assert (read.keras_version, read.format) == ("2.2.4", "keras2")


def test_a_layer_name_that_is_not_utf8(tmp_path):
    """A layer name in Latin-1 bytes: refused naming the attribute and
    showing the bytes."""
    path = tmp_path / "latin1.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"caf\xe9"])
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.read_weights(path)
    assert caught.value.field == "layer_names"
    assert "attribute 'layer_names': expected UTF-8 text, got b'caf\\xe9'" in str(
        caught.value
    )


def test_an_array_whose_compressed_data_is_damaged(tmp_path):
    """The file opens and the dataset's header is whole, but its gzip chunk
    is garbage: refused naming the layer and the array."""
    path = tmp_path / "damaged.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"d"])
        group = f.create_group("d")
        group.attrs["weight_names"] = np.array([b"d_W"])
        dataset = group.create_dataset(
            "d_W", data=np.arange(64.0).reshape(8, 8), chunks=(8, 8), compression="gzip"
        )
        chunk = dataset.id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset : chunk.byte_offset + chunk.size] = b"\x55" * chunk.size
    path.write_bytes(bytes(data))
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.read_weights(path)
    assert (caught.value.layer, caught.value.field) == ("d", "d_W")
    assert "Layer 'd': array 'd_W' cannot be read: " in str(caught.value)


def test_layer_configs_walk_lists_and_skip_what_is_not_a_layer(tmp_path):
    """A model_config walked where it nests lists (a Keras 1 Sequential's
    list of layers, at any depth): a layer is a mapping with a class name
    and a config mapping that has a text name; anything else is passed
    over."""
    config = [
        {"class_name": "Dense", "config": {"name": "d"}},
        [
            {
                "class_name": "BatchNormalization",
                "config": {"name": "bn", "epsilon": 0.1},
            }
        ],
        {"class_name": "Odd", "config": 5},
        {"class_name": "Nameless", "config": {"name": 7}},
        "text",
    ]
    path = tmp_path / "model.h5"
    write_keras2(
        path, [keras2_layer("d", {"kernel": np.ones((2, 2))})], model_config=config
    )
    assert legacy.read_weights(path).layer_configs == {
        "d": ("Dense", {"name": "d"}),
        "bn": ("BatchNormalization", {"name": "bn", "epsilon": 0.1}),
    }


# -- assigning: what the model's layers take, and a failure half-way ---------------


def test_a_model_that_is_not_a_keras_layer(tmp_path, arrays):
    """Anything but a Keras layer or model is a TypeError (a programming
    error, not a file's)."""
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    with pytest.raises(TypeError, match="model: expected a Keras model, got str."):
        legacy.load_weights("model", path)


class _WithAWeightOfItsOwn(keras.layers.BatchNormalization):
    """A stock BatchNormalization with one more weight."""

    def build(self, input_shape):
        super().build(input_shape)
        self.extra = self.add_weight(shape=(), initializer="zeros", name="extra")


def test_a_batch_normalization_that_takes_other_arrays(tmp_path, arrays):
    """A BatchNormalization subclass with a fifth weight: refused by count,
    never filled by position; the model unchanged."""
    path = tmp_path / "weights.h5"
    EXAMPLES[0].write(path, arrays)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Activation("relu"),
         _WithAWeightOfItsOwn(name="bn")]
    )  # fmt: skip
    before = all_weights(model)
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_weights(model, path)
    assert caught.value.layer == "layer_2"
    assert (
        "Layer 'layer_2': the model's layer 'bn' takes 5 arrays, a "
        "BatchNormalization gives 4."
    ) in str(caught.value)
    assert_unchanged(model, before)


MODE1 = (
    os.path.dirname(os.path.abspath(__file__))
    + "/fixtures/real/keras-1.2.2-tensorflow/dense_mode1"
)


def _mode1_model():
    """Keras 1.2.2's Dense, samplewise BatchNormalization, Dense, rebuilt:
    its BatchNormalization has samplewise_epsilon_in_root=True."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(MODE1 + ".model.h5")
    norm = model.get_layer("batchnormalization_6")
    assert norm.samplewise_epsilon_in_root is True
    return model, norm


def test_a_failed_assignment_restores_weights_and_attributes(monkeypatch):
    """The last Dense's assignment fails after the BatchNormalization's
    weights and samplewise_epsilon_in_root were set: both are restored, and
    the error says the model is as it was."""
    model, norm = _mode1_model()
    norm.samplewise_epsilon_in_root = False
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    before = all_weights(model)
    last = model.get_layer("dense_6")
    calls = []

    def set_weights(values):
        calls.append(values)
        if len(calls) == 1:
            raise RuntimeError("the device went away")
        type(last).set_weights(last, values)

    monkeypatch.setattr(last, "set_weights", set_weights)
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_weights(model, MODE1 + ".model.h5")
    assert str(caught.value).endswith(
        "assigning the weights failed, the model is as it was: RuntimeError: "
        "the device went away"
    )
    assert norm.samplewise_epsilon_in_root is False
    assert_unchanged(model, before)


def test_a_new_formula_drops_the_compiled_predict_function():
    """A compiled predict function keeps the formula it was traced with:
    loading weights that set samplewise_epsilon_in_root drops it, and the
    next predict computes the release's output."""
    model, norm = _mode1_model()
    data = np.load(MODE1 + ".npz")
    x, y = data["x"], data["y"]
    scale = np.abs(y).max()
    norm.samplewise_epsilon_in_root = False
    stale = model.predict(x, verbose=0)
    assert np.abs(stale - y).max() > 1e-3 * scale
    assert model.predict_function is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the samplewise formula, told
        legacy.load_weights(model, MODE1 + ".model.h5")
    assert model.predict_function is None
    assert norm.samplewise_epsilon_in_root is True
    np.testing.assert_allclose(model.predict(x, verbose=0), y, atol=1e-5 * scale)


# -- a layer's arrays that do not fit: by count, as the file holds them -------------


def test_a_keras0_batch_normalization_of_three_arrays(tmp_path, arrays):
    """Keras 0.x saved a BatchNormalization's 4 arrays, or 2 before 0.2:
    3 is refused, naming the layer and the counts."""
    path = tmp_path / "three.h5"
    write_keras0_sequential(
        path,
        [
            [arrays["W"], arrays["b"]],
            [],
            [arrays["gamma"], arrays["beta"], arrays["mean"]],
        ],
    )
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_weights(example_model("keras_bn"), path)
    assert caught.value.layer == "layer_2"
    assert "holds 4 arrays (gamma, beta, running_mean, running_std), or 2" in str(
        caught.value
    )
    assert "the file holds 3." in str(caught.value)


def test_a_variance_without_its_running_mean(tmp_path, arrays):
    """A Keras 2 BatchNormalization whose moving_mean is missing: refused,
    not loaded with the model's own mean."""
    path = tmp_path / "variance_only.h5"
    write_keras2(
        path,
        [keras2_layer("dense_1", {"kernel": arrays["W"], "bias": arrays["b"]}),
         keras2_layer("bn", {"gamma": arrays["gamma"], "beta": arrays["beta"],
                             "moving_variance": arrays["fourth"]})],
    )  # fmt: skip
    model = example_model("stock")
    before = all_weights(model)
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_weights(model, path)
    assert caught.value.layer == "bn"
    assert (
        "Layer 'bn': the file holds ['bn/gamma:0', 'bn/beta:0', "
        "'bn/moving_variance:0'], which has one running statistic without the "
        "other."
    ) in str(caught.value)
    assert_unchanged(model, before)


def _gates(prefix, gates, size=2, units=2):
    """Keras 1.x per-gate arrays: ``{prefix}_{W,U,b}_{gate}`` for each gate."""
    shapes = {"W": (size, units), "U": (units, units), "b": (units,)}
    return [(f"{prefix}_{kind}_{gate}", np.ones(shapes[kind]))
            for gate in gates for kind in "WUb"]  # fmt: skip


@pytest.mark.parametrize(
    "target, weights, count",
    [
        # Per-gate names but a gate LSTM lacks ('x' for 'o'): not regrouped.
        (lambda: keras.layers.LSTM(2, name="lstm"), _gates("lstm", "icfx"), 12),
        # Twelve arrays not named per gate at all.
        (lambda: keras.layers.LSTM(2, name="lstm"),
         [(f"lstm_param_{n}", np.ones(2)) for n in range(12)], 12),
        # A Bidirectional's arrays do not split in two halves.
        (lambda: keras.layers.Bidirectional(keras.layers.LSTM(2), name="lstm"),
         _gates("lstm", "icfo")[:5], 5),
    ],
    ids=["unknown-gate", "not-per-gate", "bidirectional-odd"],
)  # fmt: skip
def test_recurrent_arrays_that_cannot_be_regrouped(tmp_path, target, weights, count):
    """Keras 1.x per-gate arrays are regrouped only where their names give
    exactly one W, U and b per gate; else they are refused by their count."""
    path = tmp_path / "recurrent.h5"
    write_keras1(path, [("lstm", weights)])
    target = target()
    model = keras.Sequential([keras.Input((3, 2)), target])
    before = all_weights(model)
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_weights(model, path)
    assert caught.value.layer == "lstm"
    message = str(caught.value)
    assert f"Layer 'lstm': the file holds {count} arrays" in message
    assert f"the model's layer 'lstm' takes {len(target.weights)}." in message
    assert_unchanged(model, before)


def test_file_layers_without_arrays_never_pair_with_weighted_ones(tmp_path, rng):
    """A file's layers without arrays (activations, dropouts) are left out
    before its layers are matched with the model's, even one that shares a
    name with a weighted layer of the model: the weighted ones pair by
    position."""
    first = {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=2)}
    second = {"kernel": rng.normal(size=(2, 4)), "bias": rng.normal(size=4)}
    path = tmp_path / "w.h5"
    write_keras2(
        path,
        [
            keras2_layer("dense_1", first),
            ("activation_1", []),
            keras2_layer("dense_2", second),
        ],
    )
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, name="dense_1"),
            keras.layers.Dense(4, name="activation_1"),
        ]
    )
    legacy.load_weights(model, path)
    got = [to_numpy(w) for w in model.weights]
    want = [first["kernel"], first["bias"], second["kernel"], second["bias"]]
    for actual, expected in zip(got, want, strict=True):
        np.testing.assert_allclose(actual, expected.astype("float32"), rtol=1e-7)


def test_per_gate_arrays_named_with_a_tensorflow_suffix(tmp_path, rng):
    """Keras 1.x on TensorFlow named a variable made again with a numeric
    suffix (``lstm_1_W_i_2:0``): each array's gate is still read from its
    name, and the gates are laid side by side in Keras 3's order (i, f, c,
    o) from the file's (i, c, f, o)."""
    units, features = 3, 2
    shapes = {"W": (features, units), "U": (units, units), "b": (units,)}
    gates = {}
    entries = []
    for gate in "icfo":
        for kind, shape in shapes.items():
            gates[kind, gate] = rng.normal(size=shape).astype("float32")
            entries.append((f"lstm_1_{kind}_{gate}_2:0", gates[kind, gate]))
    path = tmp_path / "lstm.h5"
    write_keras1(path, [("lstm_1", entries)])
    model = keras.Sequential(
        [keras.Input((4, features)), keras.layers.LSTM(units, name="lstm_1")]
    )
    legacy.load_weights(model, path, backend="tensorflow")
    kernel, recurrent_kernel, bias = (to_numpy(w) for w in model.layers[0].weights)
    for got, kind in ((kernel, "W"), (recurrent_kernel, "U"), (bias, "b")):
        expected = np.concatenate([gates[kind, gate] for gate in "ifco"], axis=-1)
        np.testing.assert_array_equal(got, expected)


def test_a_folder_is_no_weights_file(tmp_path):
    """A path to a folder is refused as no file, before anything is read."""
    with pytest.raises(legacy.LegacyFileError, match="no file") as caught:
        legacy.read_weights(tmp_path)
    assert isinstance(caught.value, FileNotFoundError)


@pytest.mark.parametrize(
    "written, version",
    [("2.2.4-tf", (2, 2, 4)), ("2.1.6-tf", (2, 1, 6)), ("1.0.8", (1, 0, 8)),
     ("2.13", (2, 13, 0)), ("3.0.0rc1", (3, 0, 0))],
)  # fmt: skip
def test_versions_with_a_suffix_are_read(written, version):
    """tf.keras recorded its Keras version with a suffix ("2.2.4-tf"), Keras 2
    release candidates with theirs: the release is the leading numbers."""
    from keras_bn.legacy.releases import version_tuple

    assert version_tuple(written) == version


def test_a_compressed_array_larger_than_its_file_is_read(tmp_path):
    """Keras wrote its arrays uncompressed, but a file repacked with gzip
    holds arrays larger than itself: one of a few hundred kilobytes in a
    file of a few is read, its values as written."""
    kernel = np.zeros((256, 300), dtype="float32")
    kernel[::7, ::5] = 1.5
    bias = np.arange(300, dtype="float32")
    path = tmp_path / "gzip.h5"
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = b"2.2.4"
        file.attrs["backend"] = b"tensorflow"
        file.attrs["layer_names"] = np.array([b"dense_1"])
        group = file.create_group("dense_1")
        group.attrs["weight_names"] = np.array([b"dense_1/kernel:0", b"dense_1/bias:0"])
        group.create_dataset("dense_1/kernel:0", data=kernel, compression="gzip")
        group.create_dataset("dense_1/bias:0", data=bias)
    assert os.path.getsize(path) < kernel.nbytes
    (layer,) = legacy.read_weights(path).layers
    np.testing.assert_array_equal(layer.arrays[0], kernel)
    np.testing.assert_array_equal(layer.arrays[1], bias)


def test_frozen_layers_take_their_weights_too(tmp_path, rng):
    """A layer frozen for fine-tuning (trainable=False) still holds weights:
    it is matched with the file's layer in its place and takes its arrays."""
    first = {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=2)}
    second = {"kernel": rng.normal(size=(2, 4)), "bias": rng.normal(size=4)}
    path = tmp_path / "w.h5"
    write_keras2(
        path, [keras2_layer("dense_1", first), keras2_layer("dense_2", second)]
    )
    frozen = keras.layers.Dense(2, name="frozen")
    frozen.trainable = False
    model = keras.Sequential(
        [keras.Input((3,)), frozen, keras.layers.Dense(4, name="head")]
    )
    legacy.load_weights(model, path)
    np.testing.assert_allclose(to_numpy(frozen.kernel), first["kernel"], rtol=1e-6)
    head = model.get_layer("head")
    np.testing.assert_allclose(to_numpy(head.kernel), second["kernel"], rtol=1e-6)


def test_a_batch_norm_without_gamma_has_its_statistics(tmp_path, rng):
    """A Keras 2 BatchNormalization built with scale=False saved three
    arrays (beta and its two running statistics): its statistics load, and
    the warnings are about its unrecorded epsilon, not about statistics it
    would lack."""
    beta, mean = rng.normal(size=3), rng.normal(size=3)
    variance = rng.uniform(0.5, 2.0, size=3)
    path = tmp_path / "w.h5"
    write_keras2(
        path,
        [keras2_layer("bn", {"beta": beta, "moving_mean": mean,
                             "moving_variance": variance})],
    )  # fmt: skip
    layer = keras.layers.BatchNormalization(scale=False, name="bn")
    model = keras.Sequential([keras.Input((3,)), layer])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy.load_weights(model, path)
    messages = " ".join(str(w.message) for w in caught)
    assert "does not record the epsilon" in messages
    assert "saved only gamma and beta" not in messages
    np.testing.assert_allclose(to_numpy(layer.moving_mean), mean, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(layer.moving_variance), variance, rtol=1e-6)


@pytest.mark.parametrize(
    "release, in_root", [("keras-1.2.2-theano", True), ("keras-0.3.3-theano", False)]
)
def test_the_samplewise_formula_is_told_where_it_changed(release, in_root):
    """Keras 1.x's samplewise layers put epsilon inside the root, Keras
    0.x's did not: loading a mode-1 layer sets the release's formula, and
    warns of it only where it is Keras 1's, naming the layer."""
    directory = Path(__file__).resolve().parent / "fixtures" / "real" / release
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = legacy.load_model(
            directory / "dense_mode1.json",
            weights=directory / "dense_mode1.weights.h5",
            backend="theano",
        )
    samplewise = [
        layer
        for layer in model.layers
        if isinstance(layer, BatchNormalization) and layer.mode == 1
    ]
    assert samplewise
    assert all(layer.samplewise_epsilon_in_root is in_root for layer in samplewise)
    told = [str(w.message) for w in caught if "normalized samplewise" in str(w.message)]
    if in_root:
        (message,) = told
        assert all(repr(layer.name) in message for layer in samplewise)
    else:
        assert told == []


@pytest.mark.parametrize("key", ["nb_layers", "nb_params"])
def test_a_count_that_is_a_bool_is_refused(tmp_path, key):
    """Keras 0.x's counts are whole numbers; a bool (which Python would take
    for 0 or 1) in their place is refused, naming the attribute."""
    path = tmp_path / "w.h5"
    write_keras0_sequential(path, [[np.ones((2, 3)), np.zeros(3)]])
    with h5py.File(path, "r+") as file:
        target = file if key == "nb_layers" else file["layer_0"]
        target.attrs[key] = True
    with pytest.raises(
        legacy.LegacyFileError, match="expected a whole number"
    ) as caught:
        legacy.read_weights(path)
    assert caught.value.field == key


def test_a_keras0_file_takes_the_callers_running_std_form(tmp_path, rng):
    """Every Keras 0.x kept a standard deviation, unless the caller knows
    better (a patched release): running_std="variance" is honoured, the
    stored array then read as a variance (std = sqrt(variance + epsilon))."""
    gamma, beta, mean = rng.normal(size=(3, 3))
    fourth = rng.uniform(0.5, 2.0, size=3)
    path = tmp_path / "w.h5"
    write_keras0_sequential(path, [[gamma, beta, mean, fourth]])
    model = keras.Sequential([keras.Input((3,)), BatchNormalization(epsilon=1e-3)])
    x = rng.normal(size=(5, 3)).astype("float32")
    legacy.load_weights(model, path, running_std="variance", epsilon=1e-3)
    as_variance = gamma * (x - mean) / np.sqrt(fourth + 1e-3) + beta
    np.testing.assert_allclose(to_numpy(model(x)), as_variance, rtol=1e-5, atol=1e-6)
    legacy.load_weights(model, path, epsilon=1e-3)  # a std, as stored
    as_std = gamma * (x - mean) / (fourth + 1e-3) + beta
    np.testing.assert_allclose(to_numpy(model(x)), as_std, rtol=1e-5, atol=1e-6)


def test_a_batch_norm_mode_that_is_a_bool_is_refused(tmp_path, rng):
    """A whole-model file's BatchNormalization config whose mode is JSON's
    true (which Python would take for 1) is refused, naming the field."""
    arrays = [rng.normal(size=3) for _ in range(4)]
    layer = keras1_layer("bn", dict(zip(("gamma", "beta", "running_mean",
                                         "running_std"), arrays)))  # fmt: skip
    config = {"class_name": "Sequential", "config": [
        {"class_name": "BatchNormalization",
         "config": {"name": "bn", "mode": True, "epsilon": 1e-3,
                    "batch_input_shape": [None, 3]}}]}  # fmt: skip
    path = tmp_path / "m.h5"
    write_keras1(path, [layer], keras_version="1.2.2", model_config=config)
    model = keras.Sequential([keras.Input((3,)), BatchNormalization(name="bn")])
    with pytest.raises(legacy.LegacyFileError, match="'mode' must be") as caught:
        legacy.load_weights(model, path)
    assert caught.value.field == "mode"


def test_a_declared_shape_is_counted_in_bytes(tmp_path):
    """A dataset declaring more bytes than its file holds is refused before
    it is read, even when its count of elements would fit (8-byte floats
    that were never written: HDF5 stores nothing for them)."""
    path = tmp_path / "w.h5"
    write_keras0_sequential(path, [[np.ones(3)]])
    elements = os.path.getsize(path) // 2
    with h5py.File(path, "r+") as file:
        del file["layer_0"]["param_0"]
        file["layer_0"].create_dataset("param_0", shape=(elements,), dtype="float64")
    size = os.path.getsize(path)
    assert elements <= size < 8 * elements
    with pytest.raises(legacy.LegacyFileError, match="more than the file"):
        legacy.read_weights(path)
