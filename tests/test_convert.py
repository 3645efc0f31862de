"""keras_bn.convert against the real keras.layers.BatchNormalization and
torch.nn.BatchNorm1d/2d/3d: the converted layer's inference output must
match the original's to 1e-6 in float64 on random inputs.

Keras 3's own layer computes float64 inputs in float32 (its compute dtype is
``backend.result_type(inputs.dtype, "float32")``, which Keras promotes to
float32), so against it the bound is 1e-6 relative to the outputs' size; the
conversion itself is checked to 1e-12 against the NumPy statement of both
formulas."""

import keras
import numpy as np
import pytest
from conftest import assert_exact, dtype_scope, to_numpy
from reference import seed_featurewise, variance_form

from keras_bn import BatchNormalization, convert


def broadcast(array, shape, axis):
    """A per-feature array shaped to broadcast against inputs of ``shape``."""
    target = [1] * len(shape)
    target[axis] = -1
    return np.reshape(array, target)


def random_statistics(rng, size, center=True, scale=True):
    return (
        ([rng.uniform(0.5, 1.5, size)] if scale else [])
        + ([rng.normal(size=size)] if center else [])
        + [rng.normal(size=size), rng.uniform(0.1, 3.0, size)]
    )


# -- keras.layers.BatchNormalization -> keras_bn -----------------------------------

STOCK_CASES = [
    # (input shape, axis)
    ((32, 5), -1),
    ((8, 6, 4), 1),
    ((4, 3, 5, 6), 1),
    ((4, 5, 6, 3), -1),
    ((4, 5, 6, 3), 2),
]


@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("epsilon", [1e-5, 1e-3, 0.5])
@pytest.mark.parametrize("shape, axis", STOCK_CASES)
def test_from_keras_is_exact_at_inference(rng, shape, axis, epsilon, center, scale):
    with dtype_scope("float64"):
        stock = keras.layers.BatchNormalization(
            axis=axis,
            epsilon=epsilon,
            momentum=0.8,
            center=center,
            scale=scale,
            dtype="float64",
        )
        stock.build(shape)
        stock.set_weights(random_statistics(rng, shape[axis], center, scale))
        converted = convert.from_keras(stock)
        x = rng.normal(1.0, 2.0, size=shape)
        assert isinstance(converted, BatchNormalization)
        assert (converted.epsilon, converted.momentum, converted.axis) == (
            epsilon,
            0.8,
            axis,
        )
        assert (converted.center, converted.scale) == (center, scale)
        assert_exact(converted(x, training=False), stock(x, training=False))
        # The stock layer's formula in float64, from its own weights.
        gamma = broadcast(stock.gamma.numpy(), shape, axis) if scale else 1.0
        beta = broadcast(stock.beta.numpy(), shape, axis) if center else 0.0
        expected = variance_form(
            x,
            gamma,
            beta,
            broadcast(stock.moving_mean.numpy(), shape, axis),
            broadcast(stock.moving_variance.numpy(), shape, axis),
            epsilon,
        )
        np.testing.assert_allclose(
            to_numpy(converted(x, training=False)), expected, rtol=1e-12, atol=1e-12
        )


def test_from_keras_keeps_the_momentum_convention(rng):
    """One training step moves both layers' running means alike (to float32
    rounding, in which the stock layer computes)."""
    with dtype_scope("float64"):
        stock = keras.layers.BatchNormalization(momentum=0.7, dtype="float64")
        stock.build((16, 4))
        stock.set_weights(random_statistics(rng, 4))
        converted = convert.from_keras(stock)
        x = rng.normal(3.0, 2.0, size=(16, 4))
        stock(x, training=True)
        converted(x, training=True)
        np.testing.assert_allclose(
            converted.running_mean.numpy(), stock.moving_mean.numpy(), rtol=1e-6
        )


def test_from_keras_carries_name_dtype_and_trainability(rng):
    stock = keras.layers.BatchNormalization(name="bn_7", trainable=False)
    stock.build((None, 3))
    converted = convert.from_keras(stock)
    assert converted.name == "bn_7" and not converted.trainable
    assert converted.dtype_policy.name == stock.dtype_policy.name


def test_from_keras_needs_a_built_stock_layer():
    with pytest.raises(ValueError, match="must be built"):
        convert.from_keras(keras.layers.BatchNormalization())
    with pytest.raises(TypeError, match="keras.layers.BatchNormalization"):
        convert.from_keras(BatchNormalization((3,)))


# -- keras_bn -> keras.layers.BatchNormalization -----------------------------------

SEED_CASES = [
    # (input shape, keras_bn axis)
    ((32, 5), None),
    ((32, 5), -1),
    ((8, 6, 4), 1),
    ((4, 5, 6, 3), -1),
    ((4, 3, 5, 6), (1,)),
]


@pytest.mark.parametrize("target_epsilon", [None, 1e-3])
@pytest.mark.parametrize("shape, axis", SEED_CASES)
def test_to_keras_is_exact_at_inference(rng, shape, axis, target_epsilon):
    with dtype_scope("float64"):
        layer = BatchNormalization(
            epsilon=1e-4, momentum=0.95, axis=axis, dtype="float64"
        )
        layer.build(shape)
        size = layer.running_mean.shape[0]
        layer.set_weights(random_statistics(rng, size))
        stock = convert.to_keras(layer, epsilon=target_epsilon)
        x = rng.normal(-1.0, 3.0, size=shape)
        assert isinstance(stock, keras.layers.BatchNormalization)
        assert stock.epsilon == (1e-4 if target_epsilon is None else target_epsilon)
        assert stock.momentum == 0.95
        assert_exact(stock(x, training=False), layer(x, training=False))
        axis = stock.axis
        expected = seed_featurewise(
            x,
            *(broadcast(w, shape, axis) for w in layer.get_weights()),
            1e-4,
        )
        np.testing.assert_allclose(
            variance_form(
                x,
                *(broadcast(w, shape, axis) for w in stock.get_weights()),
                stock.epsilon,
            ),
            expected,
            rtol=1e-12,
            atol=1e-12,
        )


@pytest.mark.parametrize(
    "center, scale", [(False, True), (True, False), (False, False)]
)
def test_to_keras_without_center_or_scale(rng, center, scale):
    with dtype_scope("float64"):
        layer = BatchNormalization((4,), center=center, scale=scale, dtype="float64")
        layer.set_weights(random_statistics(rng, 4, center, scale))
        stock = convert.to_keras(layer)
        x = rng.normal(size=(10, 4))
        assert (stock.center, stock.scale) == (center, scale)
        assert_exact(stock(x), layer(x))


def test_to_keras_refuses_what_the_stock_layer_cannot_express(rng):
    with pytest.raises(ValueError, match="mode=1"):
        convert.to_keras(BatchNormalization((3,), mode=1))
    with pytest.raises(ValueError, match=r"feature axes \(1, 2\)"):
        convert.to_keras(BatchNormalization((3, 2)))
    with pytest.raises(ValueError, match="must be built"):
        convert.to_keras(BatchNormalization())
    with pytest.raises(TypeError, match="keras_bn.BatchNormalization"):
        convert.to_keras(keras.layers.Dense(3))
    # (running_std + e)**2 must reach the stock layer's epsilon.
    small = BatchNormalization((3,))
    small.set_weights([np.ones(3), np.zeros(3), np.zeros(3), np.full(3, 0.01)])
    with pytest.raises(ValueError, match="moving_variance would be negative"):
        convert.to_keras(small, epsilon=0.1)
    # The new layer's epsilon: a wrong type, then a wrong value.
    with pytest.raises(TypeError, match="epsilon: expected None or a positive"):
        convert.to_keras(small, epsilon="small")
    with pytest.raises(ValueError, match="epsilon: expected None or a positive"):
        convert.to_keras(small, epsilon=0.0)


# -- the shared arithmetic -----------------------------------------------------------


@pytest.mark.parametrize(
    "form, denominator",
    [
        ("std", lambda a, e: a + e),
        ("variance", lambda a, e: np.sqrt(a + e)),
        ("theano_variance", lambda a, e: np.sqrt(a) + e),
    ],
)
@pytest.mark.parametrize("target_form", ["std", "variance"])
def test_convert_running_statistic_keeps_the_denominator(
    rng, form, denominator, target_form
):
    fourth = rng.uniform(0.5, 2.0, 6)
    converted = convert.convert_running_statistic(
        fourth, form, 1e-3, target_form, 0.02, "Layer 'x'"
    )
    # The target's own denominator, written out.
    target = converted + 0.02 if target_form == "std" else np.sqrt(converted + 0.02)
    np.testing.assert_allclose(target, denominator(fourth, 1e-3), rtol=1e-14)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (([1.0], "bogus", 1e-3, "std", 1e-6, "Layer 'bn'"), "form"),
        (([1.0], "std", 1e-3, "stdd", 1e-6, "Layer 'bn'"), "target_form"),
        (
            ([-0.5], "variance", 1e-3, "std", 1e-6, "Layer 'bn'"),
            r"Layer 'bn'.*greater than -epsilon \(-0.001\)",
        ),
        (([-1e-3], "variance", 1e-3, "variance", 1e-3, "bn"), "greater than -eps"),
        (([-0.5], "theano_variance", 1e-3, "std", 1e-6, "Layer 'bn'"), ">= 0"),
    ],
)
def test_convert_running_statistic_refuses_bad_input(arguments, message):
    with pytest.raises(ValueError, match=message):
        convert.convert_running_statistic(*arguments)


def test_convert_running_statistic_refuses_a_form_that_is_not_a_string():
    with pytest.raises(TypeError, match="form: expected one of"):
        convert.convert_running_statistic([1.0], 3, 1e-3, "std", 1e-6, "Layer 'bn'")


def test_a_variance_a_hair_below_zero_converts():
    """What the release evaluated, sqrt(v + eps), for v a hair below 0 (a
    channel that never fired): the target's denominator equals it."""
    fourth = np.array([-4.0e-17, -3.3e-19, -1.1e-19, 0.0, 0.7])
    denominator = np.sqrt(fourth + 1e-3)
    running_std = convert.convert_running_statistic(
        fourth, "variance", 1e-3, "std", 1e-6, "bn"
    )
    np.testing.assert_allclose(running_std + 1e-6, denominator, rtol=1e-14)
    variance = convert.convert_running_statistic(
        fourth, "variance", 1e-3, "variance", 1e-5, "bn"
    )
    np.testing.assert_allclose(np.sqrt(variance + 1e-5), denominator, rtol=1e-14)


def test_variance_to_variance_is_direct():
    """v + eps - eps', not through the std: a variance of 0 or 1e-36 comes
    back as itself with the same epsilon (through sqrt and a square it came
    back as -2e-19, and was refused as negative)."""
    fourth = np.array([0.0, 1e-36, 0.25])
    same = convert.convert_running_statistic(
        fourth, "variance", 1e-3, "variance", 1e-3, "bn"
    )
    np.testing.assert_array_equal(same, fourth)
    other = convert.convert_running_statistic(
        fourth, "variance", 1e-3, "variance", 1e-5, "bn"
    )
    np.testing.assert_array_equal(other, fourth + (1e-3 - 1e-5))
