"""keras_bn.convert.model_from_keras and model_to_keras on whole models.

The reference is always the model converted from: the stock Keras model's
own predictions for `model_from_keras`, the keras_bn model's for
`model_to_keras`, each to 1e-5 of the outputs' size (float32). The models
are built with random weights and running statistics, so that a swapped
layer whose weights were not converted predicts something else. Every other
layer must keep its class, name and exact weights, and the original model
must be left as it was.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import assert_exact, to_numpy

from keras_bn import BatchNormalization, convert
from keras_bn.convert import SwapReport

L = keras.layers
KERAS_BN = "keras_bn.BatchNormalization"
STOCK = "keras.layers.BatchNormalization"
EPSILON = 1e-3


def stock_bn(name, axis=-1):
    return L.BatchNormalization(axis=axis, epsilon=EPSILON, momentum=0.8, name=name)


def seed_bn(name, axis=-1):
    return BatchNormalization(epsilon=EPSILON, momentum=0.8, axis=axis, name=name)


# -- the models: each builder takes the Batch Normalization to use and returns
# the model, its input shapes and the paths of its Batch Normalizations.


def dense_sequential(bn):
    model = keras.Sequential(
        [
            keras.Input((6,), name="x"),
            L.Dense(8, name="dense_1"),
            bn("bn_1"),
            L.Activation("relu", name="relu"),
            L.Dense(4, name="dense_2"),
            bn("bn_2"),
            L.Dense(3, name="out"),
        ],
        name="dense",
    )
    return model, [(6,)], ["bn_1", "bn_2"]


def conv_sequential(bn):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3), name="image"),
            L.Conv2D(4, 3, name="conv_1"),
            bn("bn_1"),
            L.ReLU(name="relu"),
            L.Conv2D(5, 3, padding="same", name="conv_2"),
            # Statistics per row, not per channel.
            bn("bn_rows", axis=1),
            L.GlobalAveragePooling2D(name="pool"),
            L.Dense(3, name="out"),
        ],
        name="conv",
    )
    return model, [(8, 8, 3)], ["bn_1", "bn_rows"]


def two_branches(bn):
    """Two inputs, two branches, and one Batch Normalization called on both."""
    first = keras.Input((6,), name="first")
    second = keras.Input((4,), name="second")
    a = bn("bn_a")(L.Dense(5, name="a")(first))
    b = L.Activation("tanh", name="tanh")(L.Dense(5, name="b")(second))
    b = bn("bn_b")(b)
    shared = bn("bn_shared")
    joined = L.Concatenate(name="join")([shared(a), shared(b)])
    model = keras.Model([first, second], L.Dense(3, name="out")(joined), name="two")
    return model, [(6,), (4,)], ["bn_a", "bn_b", "bn_shared"]


def nested(bn, share_across=True):
    """A functional model in a Sequential in a functional model; the inner
    one frozen, and (``share_across``) a Dense layer shared by the outer
    model and the Sequential."""
    deeper_input = keras.Input((5,), name="deeper_x")
    deeper = keras.Model(
        deeper_input,
        bn("bn_c")(L.Dense(5, name="deeper_dense")(deeper_input)),
        name="deeper",
    )
    deeper.trainable = False
    shared = L.Dense(5, name="shared")
    block = keras.Sequential(
        [keras.Input((5,), name="block_x"), shared, bn("bn_b"), deeper], name="block"
    )
    x = keras.Input((6,), name="x")
    h = bn("bn_a")(L.Dense(5, name="stem")(x))
    after = shared if share_across else L.Dense(5, name="after")
    h = after(block(h))
    model = keras.Model(x, L.Dense(3, name="out")(h), name="outer")
    return model, [(6,)], ["bn_a", "block/bn_b", "block/deeper/bn_c"]


KINDS = [dense_sequential, conv_sequential, two_branches, nested]


def randomize(model, rng):
    """Random weights everywhere; running variances and stds positive."""
    for variable in model.weights:
        if variable.name in ("moving_variance", "running_std"):
            value = rng.uniform(0.3, 3.0, variable.shape)
        else:
            value = rng.normal(0.0, 1.0, variable.shape)
        variable.assign(value.astype(variable.dtype))


def inputs(shapes, rng):
    batch = [rng.normal(0.5, 2.0, (16, *shape)).astype("float32") for shape in shapes]
    return batch if len(batch) > 1 else batch[0]


def layers_by_path(model, prefix=""):
    """``{path: layer}`` for every layer of ``model`` and of the models
    nested in it (the nested models too), input layers included."""
    found = {}
    for layer in model.layers:
        path = prefix + layer.name
        found.setdefault(path, layer)
        if isinstance(layer, keras.Model):
            found.update(layers_by_path(layer, path + "/"))
    return found


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def assert_same_arrays(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def check_copy(model, new, swapped_paths, new_class):
    """Same names in the same order; swapped layers of ``new_class``, new
    objects; every other layer of its class with the very same weights."""
    assert type(new) is type(model)
    assert new.name == model.name
    old_layers, new_layers = layers_by_path(model), layers_by_path(new)
    assert list(new_layers) == list(old_layers)
    for path, old in old_layers.items():
        layer = new_layers[path]
        assert layer is not old
        if path in swapped_paths:
            assert type(layer) is new_class, path
        else:
            assert type(layer) is type(old), path
            assert layer.trainable == old.trainable, path
        if path not in swapped_paths and not isinstance(old, keras.Model):
            # A nested model's own list holds its swapped layers' weights.
            assert_same_arrays(layer.get_weights(), old.get_weights())
    assert len(new.trainable_weights) == len(model.trainable_weights)


def predict(model, x):
    return to_numpy(model(x, training=False))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_model_from_keras_predicts_as_the_stock_model(rng, kind):
    model, shapes, paths = kind(stock_bn)
    randomize(model, rng)
    before = snapshot(model)
    x = inputs(shapes, rng)
    expected = predict(model, x)

    new, report = convert.model_from_keras(model)

    assert report == SwapReport(swapped=dict.fromkeys(paths, KERAS_BN), kept={})
    assert_exact(predict(new, x), expected, bound=1e-5)
    check_copy(model, new, paths, BatchNormalization)
    # The seed's form of each stock layer's statistics, in NumPy.
    old_layers, new_layers = layers_by_path(model), layers_by_path(new)
    for path in paths:
        gamma, beta, mean, variance = old_layers[path].get_weights()
        weights = new_layers[path].get_weights()
        assert_same_arrays(weights[:3], [gamma, beta, mean])
        np.testing.assert_allclose(
            weights[3], np.sqrt(variance.astype("float64") + EPSILON) - EPSILON,
            rtol=1e-6,
        )  # fmt: skip
        assert new_layers[path].epsilon == EPSILON
    # The original is as it was.
    assert_same_arrays(snapshot(model), before)
    assert all(type(old_layers[p]) is keras.layers.BatchNormalization for p in paths)
    assert_exact(predict(model, x), expected, bound=0)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_model_to_keras_predicts_as_the_keras_bn_model(rng, kind):
    model, shapes, paths = kind(seed_bn)
    randomize(model, rng)
    before = snapshot(model)
    x = inputs(shapes, rng)
    expected = predict(model, x)

    new, report = convert.model_to_keras(model)

    assert report == SwapReport(swapped=dict.fromkeys(paths, STOCK), kept={})
    assert_exact(predict(new, x), expected, bound=1e-5)
    check_copy(model, new, paths, keras.layers.BatchNormalization)
    old_layers, new_layers = layers_by_path(model), layers_by_path(new)
    for path in paths:
        gamma, beta, mean, running_std = old_layers[path].get_weights()
        weights = new_layers[path].get_weights()
        assert_same_arrays(weights[:3], [gamma, beta, mean])
        np.testing.assert_allclose(
            weights[3], (running_std.astype("float64") + EPSILON) ** 2 - EPSILON,
            rtol=1e-6,
        )  # fmt: skip
    assert_same_arrays(snapshot(model), before)
    assert all(type(old_layers[p]) is BatchNormalization for p in paths)


def test_shared_layers_stay_shared(rng):
    model, _, _ = nested(stock_bn)
    new, _ = convert.model_from_keras(model)
    assert new.get_layer("shared") is new.get_layer("block").get_layer("shared")
    model, _, _ = two_branches(stock_bn)
    new, _ = convert.model_from_keras(model)
    (entry,) = [e for e in new.get_config()["layers"] if e["name"] == "bn_shared"]
    assert len(entry["inbound_nodes"]) == 2
    assert len(new.layers) == len(model.layers)


def test_the_copy_keeps_input_names_and_compilation(rng):
    model, _, _ = two_branches(stock_bn)
    model.compile("adam", "mse")
    new, _ = convert.model_from_keras(model)
    assert [t.name for t in new.inputs] == [t.name for t in model.inputs]
    assert new.compiled
    assert new.get_compile_config()["loss"] == "mse"


# -- what cannot be swapped ------------------------------------------------------


class MyBatchNormalization(BatchNormalization):
    pass


class MyStockBatchNormalization(keras.layers.BatchNormalization):
    pass


def test_model_to_keras_keeps_what_the_stock_layer_cannot_compute(rng):
    x = keras.Input((6,), name="x")
    h = L.Dense(4, name="dense")(x)
    h = BatchNormalization(mode=1, name="samplewise")(h)
    h = BatchNormalization(mode=2, name="batch_statistics")(h)
    tiny = BatchNormalization(epsilon=EPSILON, axis=-1, name="tiny_std")
    h = tiny(h)
    h = MyBatchNormalization(axis=-1, name="custom")(h)
    h = seed_bn("fine")(h)
    flat = L.Flatten(name="flat")(
        BatchNormalization(name="per_position")(
            L.Conv2D(2, 1, name="conv")(L.Reshape((2, 2, 1), name="square")(h))
        )
    )
    sequence = L.Reshape((2, 2), name="sequence")(h)
    timed = L.TimeDistributed(seed_bn("bn_td"), name="td")(sequence)
    out = L.Concatenate(name="join")([flat, L.Flatten(name="flat_td")(timed)])
    model = keras.Model(x, out, name="mixed")
    randomize(model, rng)
    tiny_weights = tiny.get_weights()
    tiny_weights[3][1] = 2.0**-10  # (std + epsilon)**2 < epsilon: no variance
    tiny.set_weights(tiny_weights)
    before = snapshot(model)
    data = inputs([(6,)], rng)

    new, report = convert.model_to_keras(model)

    assert report == SwapReport(
        swapped={"fine": STOCK},
        kept={
            "samplewise": "mode 1 (samplewise: each sample normalized with its own "
            "statistics); keras.layers.BatchNormalization has mode 0 only",
            "batch_statistics": "mode 2 (the batch's statistics at inference "
            "too); keras.layers.BatchNormalization has mode 0 only",
            "tiny_std": "Layer 'tiny_std': moving_variance would be negative: "
            "running_std: (running_std + epsilon)**2 must be at least the target "
            "epsilon 0.001 to convert to a variance; the smallest running_std is "
            "0.0009765625. Use a smaller epsilon.",
            "custom": "MyBatchNormalization is a subclass of "
            "keras_bn.BatchNormalization, whose own behaviour the conversion "
            "would drop",
            "per_position": "statistics per position of the feature axes (1, 2, "
            "3) (axis=None, inputs of rank 4); keras.layers.BatchNormalization "
            "keeps them over one axis",
            "td/bn_td": "inside 'td' (TimeDistributed), which is copied as it is",
        },
    )
    # Mode 2 normalizes with the batch's statistics: the same batch, whole.
    assert_exact(predict(new, data), predict(model, data), bound=1e-5)
    kept = ["samplewise", "batch_statistics", "tiny_std", "custom", "per_position"]
    check_copy(model, new, ["fine"], keras.layers.BatchNormalization)
    for name in kept:
        assert type(new.get_layer(name)) is type(model.get_layer(name))
    assert_same_arrays(snapshot(model), before)


def test_model_from_keras_keeps_subclasses_wrapped_and_unconvertible_layers(rng):
    model = keras.Sequential(
        [
            keras.Input((2, 3), name="x"),
            MyStockBatchNormalization(name="custom"),
            L.TimeDistributed(stock_bn("bn_td"), name="td"),
            stock_bn("fine"),
            stock_bn("negative"),
        ],
        name="mixed",
    )
    randomize(model, rng)
    negative = model.get_layer("negative")
    weights = negative.get_weights()
    weights[3][1] = -(2.0**-9)  # below -epsilon: sqrt(variance + epsilon) fails
    negative.set_weights(weights)

    new, report = convert.model_from_keras(model)

    assert report == SwapReport(
        swapped={"fine": KERAS_BN},
        kept={
            "custom": "MyStockBatchNormalization is a subclass of "
            "keras.layers.BatchNormalization, whose own behaviour the "
            "conversion would drop",
            "td/bn_td": "inside 'td' (TimeDistributed), which is copied as it is",
            "negative": "Layer 'negative': its fourth array is a variance and "
            "must be greater than -epsilon (-0.001), got minimum -0.001953125.",
        },
    )
    check_copy(model, new, ["fine"], BatchNormalization)
    # The negative channel is NaN in both, as the original computes it.
    data = inputs([(2, 3)], rng)
    np.testing.assert_allclose(
        predict(new, data), predict(model, data), rtol=0, atol=1e-5, equal_nan=True
    )


# -- refusals --------------------------------------------------------------------


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(3)
        self.norm = L.BatchNormalization()

    def call(self, inputs):
        return self.norm(self.dense(inputs))


def _subclassed():
    model = Subclassed(name="sub")
    model(np.zeros((2, 4), "float32"))
    return model


def _holding_a_subclassed_model():
    inner = _subclassed()
    x = keras.Input((4,))
    return keras.Model(x, L.Dense(2, name="out")(inner(x)), name="holder")


def _unbuilt():
    return keras.Sequential([L.Dense(3), L.BatchNormalization()], name="unbuilt")


REFUSALS = [
    (
        lambda: L.Dense(3),
        TypeError,
        "model: expected a Sequential or functional keras.Model, got Dense.",
    ),
    (
        _subclassed,
        TypeError,
        "model: expected a Sequential or functional keras.Model, got Subclassed, a "
        "subclassed model: its layers have no graph to rebuild.",
    ),
    (
        _holding_a_subclassed_model,
        TypeError,
        "model: expected a Sequential or functional keras.Model (also for the "
        "models nested in it), got Subclassed as 'sub', a subclassed model: its "
        "layers have no graph to rebuild.",
    ),
    (
        _unbuilt,
        ValueError,
        "model: the Sequential model 'unbuilt' must be built with a known input "
        "(start it with keras.Input, or call it once).",
    ),
]


@pytest.mark.parametrize("swap", [convert.model_from_keras, convert.model_to_keras])
@pytest.mark.parametrize(
    "make, error, message",
    REFUSALS,
    ids=["layer", "subclassed", "nested_subclassed", "unbuilt"],
)
def test_refuses_what_it_cannot_copy(make, error, message, swap):
    model = make()
    before = snapshot(model)
    with pytest.raises(error) as raised:
        swap(model)
    assert str(raised.value) == message
    assert_same_arrays(snapshot(model), before)


# -- a .keras file without keras_bn ----------------------------------------------

# Loaded where keras_bn cannot be imported: a None in sys.modules makes
# ``import keras_bn`` fail, as an absent package does.
WITHOUT_KERAS_BN = """
import sys
sys.modules["keras_bn"] = None
import keras
import numpy as np
for path in sys.argv[1:]:
    data = np.load(path + ".npz")
    try:
        model = keras.saving.load_model(path)
    except Exception as error:
        print(path, "refused", type(error).__name__)
        continue
    x = [data[k] for k in sorted(data) if k.startswith("x")]
    predicted = model(x if len(x) > 1 else x[0], training=False)
    predicted = keras.ops.convert_to_numpy(predicted)
    error = float(np.max(np.abs(predicted - data["y"])))
    scale = max(1.0, float(np.max(np.abs(data["y"]))))
    print(path, "loaded", error <= 1e-5 * scale, error)
"""


@pytest.mark.slow
def test_model_to_keras_files_load_without_keras_bn(tmp_path, rng):
    paths = []
    # Keras' own .keras files lose the weights of a layer shared between a
    # model and a nested one (its loader finds them for one place only).
    kinds = [*KINDS[:-1], lambda bn: nested(bn, share_across=False)]
    for kind, name in zip(kinds, ["dense", "conv", "two_branches", "nested"]):
        model, shapes, _ = kind(seed_bn)
        randomize(model, rng)
        new, _ = convert.model_to_keras(model)
        path = str(tmp_path / f"{name}.keras")
        new.save(path)
        x = inputs(shapes, rng)
        x = x if isinstance(x, list) else [x]
        arrays = {f"x{i}": value for i, value in enumerate(x)}
        np.savez(path + ".npz", y=predict(model, x if len(x) > 1 else x[0]), **arrays)
        paths.append(path)
    # A kept keras_bn layer: the file needs keras_bn, and the check above
    # must see that it is missing.
    model = keras.Sequential(
        [keras.Input((3,)), BatchNormalization(mode=1, name="samplewise")]
    )
    new, report = convert.model_to_keras(model)
    assert list(report.kept) == ["samplewise"]
    needs = str(tmp_path / "needs_keras_bn.keras")
    new.save(needs)
    np.savez(needs + ".npz", y=np.zeros(1), x0=np.zeros((1, 3), "float32"))

    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_KERAS_BN, *paths, needs],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert [line.split()[:3] for line in lines[:-1]] == [
        [path, "loaded", "True"] for path in paths
    ]
    assert lines[-1].split()[:2] == [needs, "refused"]
