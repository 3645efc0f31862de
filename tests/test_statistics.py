"""keras_bn.recompute_statistics against population statistics computed in
NumPy over the whole data at once."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, dtype_scope

from keras_bn import BatchNormalization, recompute_statistics

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def population(h, epsilon, axes=(0,)):
    """Mean and seed std of every value at once (one batch of all data)."""
    mean = h.mean(axis=axes)
    return mean, np.sqrt(h.var(axis=axes) + epsilon)


def assert_statistics(layer, mean, std, **tolerance):
    np.testing.assert_allclose(
        layer.running_mean.numpy(), mean, **(tolerance or TOLERANCE)
    )
    np.testing.assert_allclose(
        layer.running_std.numpy(), std, **(tolerance or TOLERANCE)
    )


def two_layer_model():
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3),
            BatchNormalization(epsilon=1e-3, momentum=0.9),
            keras.layers.Activation("tanh"),
            keras.layers.Dense(2),
            BatchNormalization(mode=1),
        ]
    )


def expected_two_layer(model, x):
    """Each BatchNormalization's statistics, the second's from inputs that
    pass through the first with its new estimates."""
    (w1, b1), (w2, b2) = model.layers[0].get_weights(), model.layers[3].get_weights()
    gamma, beta = model.layers[1].get_weights()[:2]
    h1 = x @ w1 + b1
    mean1, std1 = population(h1, 1e-3)
    h2 = np.tanh(gamma * (h1 - mean1) / (std1 + 1e-3) + beta) @ w2 + b2
    return (mean1, std1), population(h2, 1e-6)


@pytest.mark.parametrize("batch_size", [1, 7, 32, 500])
def test_layers_in_order_from_the_inputs_they_see(rng, batch_size):
    x = rng.normal(2.0, 3.0, size=(50, 4))
    model = two_layer_model()
    recompute_statistics(model, x.astype("float32"), batch_size=batch_size, verbose=0)
    first, second = expected_two_layer(model, x)
    assert_statistics(model.layers[1], *first)
    # Mode 1 layers keep running estimates too.
    assert_statistics(model.layers[4], *second)


def test_float64_pooling_is_exact(rng):
    with dtype_scope("float64"):
        model = keras.Sequential(
            [keras.Input((3,), dtype="float64"), BatchNormalization(dtype="float64")]
        )
        # Batches with very different means: averaging per-batch stds would
        # leave out the spread between them.
        x = np.concatenate([rng.normal(m, 1.0, size=(10, 3)) for m in (-5, 0, 5)])
        recompute_statistics(model, x, batch_size=10, verbose=0)
        assert_statistics(model.layers[0], *population(x, 1e-6), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("axis, reduction", [(-1, (0, 1)), (1, (0, 2)), ((1, 2), (0,))])
def test_axis(rng, axis, reduction):
    x = rng.normal(1.0, 2.0, size=(20, 5, 3))
    model = keras.Sequential([keras.Input((5, 3)), BatchNormalization(axis=axis)])
    recompute_statistics(model, x.astype("float32"), batch_size=6, verbose=0)
    assert_statistics(model.layers[0], *population(x, 1e-6, reduction))


def test_masked_positions_are_left_out(rng):
    tokens = rng.integers(1, 10, size=(12, 6))
    tokens[:, 4:] = 0  # padding
    tokens[0, 2:] = 0
    model = keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(10, 3, mask_zero=True),
            BatchNormalization(axis=-1),
        ]
    )
    recompute_statistics(model, tokens, batch_size=5, verbose=0)
    embedded = model.layers[0].get_weights()[0][tokens]
    kept = embedded[tokens != 0]
    assert_statistics(model.layers[1], *population(kept, 1e-6))


# Keras' note on the subclassed block, whose unused layer stays unbuilt.
@pytest.mark.filterwarnings("ignore:.*does not have a `build\\(\\)` method")
def test_nested_and_subclassed_models(rng):
    class Block(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)
            self.batch_norm = BatchNormalization()
            self.unused = BatchNormalization()

        def call(self, inputs):
            return self.batch_norm(self.dense(inputs))

    inner = keras.Sequential([keras.layers.Dense(4), BatchNormalization()])
    block = Block()
    inputs = keras.Input((5,))
    model = keras.Model(inputs, block(inner(inputs)))
    x = rng.normal(size=(30, 5))
    with pytest.warns(UserWarning, match="never called"):
        recompute_statistics(model, x.astype("float32"), batch_size=8, verbose=0)
    w, b = inner.layers[0].get_weights()
    h = x @ w + b
    mean, std = population(h, 1e-6)
    assert_statistics(inner.layers[1], mean, std)
    gamma, beta = inner.layers[1].get_weights()[:2]
    w, b = block.dense.get_weights()
    h = (gamma * (h - mean) / (std + 1e-6) + beta) @ w + b
    assert_statistics(block.batch_norm, *population(h, 1e-6))
    assert not block.unused.built


class Batches:
    """A re-iterable of (x, y) batches, as a data loader gives them."""

    def __init__(self, x, size):
        self.x, self.size = x, size

    def __iter__(self):
        for start in range(0, len(self.x), self.size):
            batch = self.x[start : start + self.size]
            yield batch, np.zeros(len(batch))


def test_iterable_of_batches(rng):
    x = rng.normal(2.0, 3.0, size=(40, 4)).astype("float32")
    model = two_layer_model()
    recompute_statistics(model, Batches(x, 9), verbose=0)
    first, second = expected_two_layer(model, x.astype("float64"))
    assert_statistics(model.layers[1], *first)
    assert_statistics(model.layers[4], *second)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.data on TensorFlow")
def test_tf_data_dataset(rng):
    import tensorflow as tf

    x = rng.normal(2.0, 3.0, size=(40, 4)).astype("float32")
    model = two_layer_model()
    recompute_statistics(model, tf.data.Dataset.from_tensor_slices(x).batch(16))
    first, _ = expected_two_layer(model, x.astype("float64"))
    assert_statistics(model.layers[1], *first)


def test_multi_input_dict(rng):
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    outputs = BatchNormalization()(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, outputs)
    x = {"a": rng.normal(size=(20, 2)), "b": rng.normal(3.0, 1.0, size=(20, 3))}
    recompute_statistics(model, x, batch_size=6, verbose=0)
    h = np.concatenate([x["a"], x["b"]], axis=1)
    assert_statistics(model.layers[-1], *population(h, 1e-6))


def test_progress_bar(rng, capsys):
    x = rng.normal(size=(20, 4)).astype("float32")
    recompute_statistics(two_layer_model(), x, batch_size=5, verbose=1)
    assert "8/8" in capsys.readouterr().out  # 4 batches, 2 layers
    recompute_statistics(two_layer_model(), x, batch_size=5, verbose=0)
    assert capsys.readouterr().out == ""


def test_layers_work_as_before_afterwards(rng):
    x = rng.normal(size=(20, 4)).astype("float32")
    model = two_layer_model()
    recompute_statistics(model, x, verbose=0)
    assert "call" not in vars(model.layers[1])
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((20, 2)), epochs=1, verbose=0)


# -- bad input ------------------------------------------------------------------------


def test_non_finite_data_restores_every_layer(rng):
    x = rng.normal(size=(20, 4)).astype("float32")
    model = two_layer_model()
    model.layers[1].running_mean.assign(np.full(3, 0.5))
    before = [w.copy() for w in model.get_weights()]
    x[13, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        recompute_statistics(model, x, batch_size=4, verbose=0)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"batch_size": True}, TypeError, "batch_size"),
        ({"verbose": "yes"}, TypeError, "verbose"),
        ({"verbose": 2}, ValueError, "verbose"),
    ],
)
def test_bad_arguments(rng, kwargs, error, match):
    x = rng.normal(size=(8, 4)).astype("float32")
    with pytest.raises(error, match=match):
        recompute_statistics(two_layer_model(), x, **kwargs)


def test_bad_data(rng):
    model = two_layer_model()
    with pytest.raises(TypeError, match="read once"):
        recompute_statistics(model, (b for b in [np.zeros((2, 4))]), verbose=0)
    with pytest.raises(TypeError, match="data: expected"):
        recompute_statistics(model, 3.0, verbose=0)
    a, b = keras.Input((2,)), keras.Input((2,))
    two_inputs = keras.Model([a, b], BatchNormalization()(keras.layers.Add()([a, b])))
    with pytest.raises(ValueError, match="same number of samples"):
        recompute_statistics(
            two_inputs, [np.zeros((3, 2)), np.zeros((4, 2))], verbose=0
        )
    with pytest.raises(ValueError, match="at least one"):
        recompute_statistics(model, np.zeros((0, 4)), verbose=0)
    with pytest.raises(ValueError, match="at least one batch"):
        recompute_statistics(model, Batches(np.zeros((0, 4)), 2), verbose=0)


def test_model_without_keras_bn_layers():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="no keras_bn.BatchNormalization"):
        recompute_statistics(model, np.zeros((4, 3)), verbose=0)
