"""Keras 3's own BatchNormalization tests, ported to keras_bn.

A port of ``keras/src/layers/normalization/batch_normalization_test.py``
(Keras 3.15), one test here per test there, under the same name. The layer is
made through tests/peer_adapter.py (Keras' defaults and names; a running
variance read as ``(running_std + eps)**2 - eps``). Every assertion keeps its
intent; each change is marked ``CHANGED:`` with the reason, and each changed
expected value is computed from keras_bn's documented formulas
(docs/semantics.md): the std, not the variance, is the running statistic,
and epsilon is added twice, inside the root and to the std.

The ``test_renorm_*`` tests run against keras_bn's ``renorm``: the
adapter gives it Keras' ``renorm_momentum=0.99``, so that r and d use
estimates of their own as Keras' do, and the expected values follow the
seed's form of r and d (docs/semantics.md).
"""

import os

import keras
import numpy as np
import pytest
from conftest import BACKEND, to_numpy
from keras import initializers, layers, ops
from peer_adapter import (
    PeerBatchNormalization,
    moving_variance,
    peer_layer,
    std_for_variance,
)
from reference import seed_batch_statistics, seed_featurewise

from keras_bn import BatchNormalization

# Keras' run_layer_test is private API, checked on Keras 3.10 to 3.15 (see
# tests/test_batch_normalization.py); CI never skips it.
contract = pytest.mark.skipif(
    not (3, 10) <= tuple(int(p) for p in keras.__version__.split(".")[:2]) < (3, 16)
    and not os.environ.get("CI"),
    reason="run_layer_test is private Keras API, checked on Keras 3.10 to 3.15",
)


@contract
def test_bn_basics():
    from keras.src.testing import TestCase

    case = TestCase()
    # vector case
    for center_scale, trainable in [(True, 2), (False, 0)]:
        case.run_layer_test(
            PeerBatchNormalization,
            init_kwargs={"center": center_scale, "scale": center_scale},
            call_kwargs={"training": True},
            input_shape=(2, 3),
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=trainable,
            expected_num_non_trainable_weights=2,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=True,
        )
    # image case, with regularizers
    case.run_layer_test(
        PeerBatchNormalization,
        init_kwargs={
            "center": True,
            "scale": True,
            "beta_regularizer": "l2",
            "gamma_regularizer": "l2",
        },
        call_kwargs={"training": True},
        input_shape=(2, 4, 4, 3),
        expected_output_shape=(2, 4, 4, 3),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
        expected_num_seed_generators=0,
        expected_num_losses=2,  # we have 2 regularizers.
        supports_masking=True,
    )


def _our_three_passes(x, axis, epsilon):
    """CHANGED: the expected statistics after three training passes with
    momentum 0, from keras_bn's formulas (tests/reference.py): each pass
    divides by ``sqrt(var + eps) + eps``, so the output's std is
    ``sqrt(var) / (sqrt(var + eps) + eps)``, a hair under 1 (Keras': 1 - eps/2
    var); the running std is the last input's ``sqrt(var + eps)``."""
    reduction = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    out = x.astype("float64")
    for _ in range(3):
        last_input = out
        mean, std = seed_batch_statistics(out, epsilon, reduction)
        out = seed_featurewise(out, 1.0, 0.0, mean, std, epsilon)
    return out, reduction, seed_batch_statistics(last_input, epsilon, reduction)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("input_shape", [(5, 2, 3), (5, 3, 3, 2)])
@pytest.mark.parametrize("moving_mean_initializer", ["zeros", "ones"])
@pytest.mark.parametrize("moving_variance_initializer", ["zeros", "ones"])
def test_correctness(
    axis, input_shape, moving_mean_initializer, moving_variance_initializer
):
    # Training
    layer = peer_layer(
        axis=axis,
        momentum=0,
        moving_mean_initializer=moving_mean_initializer,
        moving_variance_initializer=moving_variance_initializer,
    )
    # Random data centered on 5.0, variance 10.0
    x = np.random.default_rng(0).normal(loc=5.0, scale=10.0, size=input_shape)
    out = x
    for _ in range(3):
        out = layer(out, training=True)

    # Assert the normalization is correct.
    broadcast_shape = [1] * len(input_shape)
    broadcast_shape[axis] = input_shape[axis]
    out = to_numpy(out)
    out = out - np.reshape(to_numpy(layer.beta), broadcast_shape)
    out = out / np.reshape(to_numpy(layer.gamma), broadcast_shape)

    expected, reduction_axes, (last_mean, last_std) = _our_three_passes(
        x, axis, layer.epsilon
    )
    np.testing.assert_allclose(np.mean(out, axis=reduction_axes), 0.0, atol=1e-3)
    # CHANGED: the std is ours (0.998 here), not 1; the bound stays 1e-3.
    np.testing.assert_allclose(
        np.std(out, axis=reduction_axes),
        np.std(expected, axis=reduction_axes),
        atol=1e-3,
    )
    np.testing.assert_allclose(to_numpy(layer.running_mean), 0.0, atol=1e-3)
    # CHANGED: the running statistic is the std sqrt(var + eps) of the last
    # pass's input; as a variance, (std + eps)**2 - eps = var + 2 eps std +
    # eps**2, not var.
    np.testing.assert_allclose(to_numpy(layer.running_std), last_std.ravel(), atol=1e-3)
    np.testing.assert_allclose(
        moving_variance(layer),
        (last_std.ravel() + layer.epsilon) ** 2 - layer.epsilon,
        atol=1e-3,
    )

    # Inference done before training shouldn't match.
    inference_out = layer(x, training=False)
    training_out = layer(x, training=True)
    assert not np.allclose(to_numpy(inference_out), to_numpy(training_out))

    # Since momentum is zero, inference after training should match.
    training_out = layer(x, training=True)
    inference_out = layer(x, training=False)
    np.testing.assert_allclose(
        to_numpy(inference_out), to_numpy(training_out), rtol=1e-5, atol=1e-5
    )

    # Masked result with no training should not differ
    x[:, 1, :] = 0.0
    unmasked_out = layer(x, training=False)
    masked = layers.Masking()(x)
    masked_out = layer(masked, training=False)
    np.testing.assert_allclose(to_numpy(unmasked_out), to_numpy(masked_out))

    # Masked result should differ from unmasked result
    unmasked_out = layer(x, training=False)
    x[:, 1, :] = 0.0
    masked = layers.Masking()(x)
    masked_out = layer(masked, training=True)
    assert not np.allclose(to_numpy(unmasked_out), to_numpy(masked_out))


@pytest.mark.parametrize(
    "synchronized", [False, True] if BACKEND == "tensorflow" else [False]
)
def test_input_fully_masked(synchronized):
    norm = peer_layer(scale=False, center=False, synchronized=synchronized)
    x = np.zeros((4, 5))
    mask = np.zeros((4,), dtype=np.float32)
    y = norm(x, mask=mask, training=True)
    np.testing.assert_allclose(to_numpy(y), np.zeros_like(x, dtype=np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("run_eagerly", [True, False])
@pytest.mark.parametrize("mask_value", [0.0, 0.1, 1])
def test_bachnorm_ignore_masked_values(run_eagerly, mask_value):
    padded_data = np.array(
        [
            [[1, 5], [2, 5], [mask_value, mask_value], [mask_value, mask_value]]
            for _ in range(10)
        ],
        dtype="float32",
    )

    inputs = layers.Input((None, 2))
    masked = layers.Masking(mask_value=mask_value)(inputs)
    normed = peer_layer(momentum=0.0)(masked)
    model = keras.Model(inputs, normed)
    model.compile(
        "rmsprop", loss=keras.losses.MeanSquaredError(), run_eagerly=run_eagerly
    )
    model.fit(x=padded_data, y=padded_data, batch_size=10, epochs=5, verbose=0)
    layer = model.layers[2]
    np.testing.assert_allclose(to_numpy(layer.running_mean), [1.5, 5.0], rtol=1e-6)
    # CHANGED: the running std of the unmasked values [1, 2] and [5, 5] is
    # sqrt(var + eps) (var 0.25 and 0), not the variance.
    np.testing.assert_allclose(
        to_numpy(layer.running_std),
        np.sqrt(np.array([0.25, 0.0]) + layer.epsilon),
        rtol=1e-6,
    )


def test_trainable_behavior():
    layer = peer_layer(axis=-1, momentum=0.8, epsilon=1e-7)
    layer.build((1, 4, 4, 3))
    layer.trainable = False
    assert len(layer.weights) == 4
    assert len(layer.trainable_weights) == 0
    assert len(layer.non_trainable_weights) == 4

    # Random data centered on 5.0, variance 10.0
    x = np.random.default_rng(1).normal(loc=5.0, scale=10.0, size=(200, 4, 4, 3))

    out = layer(x, training=True)
    np.testing.assert_allclose(to_numpy(out), x, rtol=1e-6, atol=1e-6)

    layer.trainable = True
    assert len(layer.weights) == 4
    assert len(layer.trainable_weights) == 2
    assert len(layer.non_trainable_weights) == 2

    for _ in range(10):
        out = layer(x, training=True)

    out = to_numpy(out)
    out = out - np.reshape(to_numpy(layer.beta), (1, 1, 1, 3))
    out = out / np.reshape(to_numpy(layer.gamma), (1, 1, 1, 3))

    np.testing.assert_allclose(np.mean(out, axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.std(out, axis=(0, 1, 2)), 1.0, atol=1e-3)


def test_large_value_within_autocast_scope():
    from keras.src.backend import AutocastScope

    layer = peer_layer()
    layer.build((1, 4, 4, 3))
    # Use 70000 to trigger overflow for float16
    # CHANGED: the running std takes the value (a variance of 70000 would be
    # a std of 264.6, which float16 holds; 70000 itself does not).
    large_value = ops.full(layer.running_std.shape, 70000)
    with AutocastScope("float16"):
        layer.running_std.assign(large_value)
        np.testing.assert_allclose(
            to_numpy(layer.running_std.value), to_numpy(large_value)
        )


def test_masked_broadcast_normalization():
    input_shape = (1, 2, 3, 4)
    mask_shape = (1, 2, 1)
    x = ops.ones(input_shape)
    mask = ops.ones(mask_shape)

    layer = peer_layer(axis=-1, momentum=0.0, epsilon=1e-3)

    y = layer(x, training=True, mask=mask)

    mean_y = ops.mean(y, axis=[0, 1, 2])

    np.testing.assert_allclose(to_numpy(mean_y), np.zeros((4,)), atol=1e-6)
    np.testing.assert_allclose(to_numpy(y), np.zeros(input_shape), atol=1e-6)

    np.testing.assert_allclose(to_numpy(layer.running_mean), np.ones((4,)), atol=1e-6)
    # CHANGED: a constant feature's running std is sqrt(0 + eps), whose
    # variance form (std + eps)**2 - eps is 2 eps**1.5 + eps**2, not 0.
    np.testing.assert_allclose(
        to_numpy(layer.running_std), np.full((4,), np.sqrt(1e-3)), atol=1e-6
    )


@contract
def test_renorm_basics():
    from keras.src.testing import TestCase

    case = TestCase()
    for init_kwargs, input_shape in [
        ({"center": True, "scale": True, "renorm": True}, (2, 3)),
        (
            {
                "center": True,
                "scale": True,
                "renorm": True,
                "renorm_clipping": {"rmax": 3.0, "rmin": 0.3, "dmax": 5.0},
            },
            (2, 4, 4, 3),
        ),
    ]:
        case.run_layer_test(
            PeerBatchNormalization,
            init_kwargs=init_kwargs,
            call_kwargs={"training": True},
            input_shape=input_shape,
            expected_output_shape=input_shape,
            expected_num_trainable_weights=2,
            # CHANGED: running_mean, running_std, renorm_mean, renorm_std:
            # 4, not Keras' 5 (it keeps a moving variance and a moving
            # stddev side by side; the seed's std is both).
            expected_num_non_trainable_weights=4,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=True,
        )


def test_renorm_invalid_clipping_keys():
    # CHANGED: keras_bn's messages name the argument their own way.
    with pytest.raises(ValueError, match="unknown keys"):
        peer_layer(renorm=True, renorm_clipping={"random_key": 1.0})
    with pytest.raises(ValueError, match="rmax must be >= rmin"):
        peer_layer(renorm=True, renorm_clipping={"rmax": 0.0, "rmin": 1.0})
    with pytest.raises(ValueError, match="dmax"):
        peer_layer(renorm=True, renorm_clipping={"rmax": 1.0, "dmax": -1.0})


def test_renorm_stddev_initializer():
    # CHANGED: renorm_std starts where running_std does, the std that
    # normalizes as the variance initializer does: sqrt(4 + eps) - eps
    # (Keras' moving_stddev and renorm_stddev start at sqrt(4) = 2).
    layer = peer_layer(
        renorm=True, moving_variance_initializer=initializers.Constant(4.0)
    )
    layer.build((None, 5))
    expected = np.full((5,), std_for_variance(4.0, 1e-3))
    np.testing.assert_allclose(to_numpy(layer.running_std), expected, atol=1e-6)
    np.testing.assert_allclose(to_numpy(layer.renorm_std), expected, atol=1e-6)


def test_renorm_inference(rng):
    # At inference time, the behaviour of both with and without renorm
    # should be the same.
    bn = peer_layer(renorm=False)
    bn_renorm = peer_layer(renorm=True)
    bn.build((None, 10))
    bn_renorm.build((None, 10))
    # CHANGED: keras_bn's variables; a random running std made non-negative.
    for attr in ["gamma", "beta", "running_mean", "running_std"]:
        value = keras.random.normal(shape=(10,))
        getattr(bn, attr).assign(ops.abs(value) if attr == "running_std" else value)
        getattr(bn_renorm, attr).assign(getattr(bn, attr))
    x = rng.normal(size=(4, 10))
    np.testing.assert_allclose(
        to_numpy(bn(x, training=False)),
        to_numpy(bn_renorm(x, training=False)),
        atol=1e-5,
        rtol=1e-5,
    )


def test_renorm_correctness(rng):
    # CHANGED: the suite's seeded generator (tests/conftest.py) for NumPy's.
    epsilon, momentum, renorm_momentum = 1e-3, 0.9, 0.8
    layer = peer_layer(
        axis=-1,
        epsilon=epsilon,
        momentum=momentum,
        renorm=True,
        renorm_momentum=renorm_momentum,
    )
    layer.build((None, 3))
    size = (3,)
    init_moving_mean = rng.normal(0.0, 1.0, size=size)
    init_moving_var = np.abs(rng.normal(1.0, 0.5, size=size))
    init_renorm_mean = rng.normal(0.0, 1.0, size=size)
    init_renorm_stddev = np.abs(rng.normal(1.0, 0.5, size=size))
    init_gamma = rng.normal(1.0, 0.1, size=size)
    init_beta = rng.normal(0.0, 0.1, size=size)
    # CHANGED: keras_bn's variables, each running std the one that
    # normalizes as Keras' variance or divides as Keras' stddev does
    # (renorm_std + eps = renorm_stddev).
    init_running_std = std_for_variance(init_moving_var, epsilon)
    init_renorm_std = init_renorm_stddev - epsilon
    layer.running_mean.assign(init_moving_mean)
    layer.running_std.assign(init_running_std)
    layer.renorm_mean.assign(init_renorm_mean)
    layer.renorm_std.assign(init_renorm_std)
    layer.gamma.assign(init_gamma)
    layer.beta.assign(init_beta)

    x = np.array(
        [[4.0, 6.0, 2.0], [8.0, -2.0, 5.0], [6.0, 4.0, 3.0]],
        dtype="float32",
    )
    # CHANGED: the seed's form (docs/semantics.md): the batch's std is
    # sqrt(var + eps) as Keras', divided with eps added once more, and
    # r = (std + eps) / (renorm_std + eps), d = (mean - renorm_mean) /
    # (renorm_std + eps).
    batch_mean, batch_stddev = (s[0] for s in seed_batch_statistics(x, epsilon))
    r = (batch_stddev + epsilon) / (init_renorm_std + epsilon)
    d = (batch_mean - init_renorm_mean) / (init_renorm_std + epsilon)
    expected_output = (
        ((x - batch_mean) / (batch_stddev + epsilon)) * r + d
    ) * init_gamma + init_beta
    actual_output = layer(x, training=True)
    np.testing.assert_allclose(to_numpy(actual_output), expected_output, atol=1e-5)

    # Verify moving statistics.
    expected_renorm_mean = init_renorm_mean * renorm_momentum + batch_mean * (
        1 - renorm_momentum
    )
    np.testing.assert_allclose(
        to_numpy(layer.renorm_mean), expected_renorm_mean, atol=1e-5
    )
    expected_renorm_std = init_renorm_std * renorm_momentum + batch_stddev * (
        1 - renorm_momentum
    )
    np.testing.assert_allclose(
        to_numpy(layer.renorm_std), expected_renorm_std, atol=1e-5
    )
    expected_moving_mean = init_moving_mean * momentum + batch_mean * (1 - momentum)
    np.testing.assert_allclose(
        to_numpy(layer.running_mean), expected_moving_mean, atol=1e-5
    )
    expected_running_std = init_running_std * momentum + batch_stddev * (1 - momentum)
    np.testing.assert_allclose(
        to_numpy(layer.running_std), expected_running_std, atol=1e-5
    )


def test_invalid_momentum():
    for momentum in (-0.1, 1.5):
        # CHANGED: keras_bn's message names the argument its own way.
        with pytest.raises(
            ValueError, match=r"momentum: expected a number in \[0, 1\]"
        ):
            peer_layer(momentum=momentum)
    # Boundary values are accepted.
    peer_layer(momentum=0.0)
    peer_layer(momentum=1.0)


def test_serialization():
    layer = peer_layer(
        renorm=True,
        renorm_clipping={"rmax": 3.0, "rmin": 0.3, "dmax": 5.0},
        renorm_momentum=0.95,
    )
    config = layer.get_config()
    new_layer = BatchNormalization.from_config(config)
    assert new_layer.get_config() == config
    # CHANGED: also the options keras_bn has that the earlier port set here:
    # momentum, and a non-default initializer.
    layer = peer_layer(momentum=0.95, moving_variance_initializer="zeros")
    config = layer.get_config()
    new_layer = BatchNormalization.from_config(config)
    assert new_layer.get_config() == config
    new_layer.build((None, 3))
    np.testing.assert_allclose(
        to_numpy(new_layer.running_std), std_for_variance(np.zeros(3), 1e-3)
    )
