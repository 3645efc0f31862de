"""Batch Renormalization (``renorm=True``) against Algorithm 1 of Ioffe
(2017) restated in NumPy in the seed's terms (`reference.renorm_train`), the
plain layer at its limits, finite differences with r and d held constant,
and Keras' own renorm layer through `keras_bn.convert`."""

import inspect

import keras
import numpy as np
import pytest
import reference as ref
from conftest import dtype_scope, loss_and_gradients, numeric_gradient, to_numpy

from keras_bn import BatchNormalization, convert, fold_batchnorm, recompute_statistics

# Keras' own layer has renorm from Keras 3.11 on (not at the declared floor).
stock_renorm = pytest.mark.skipif(
    "renorm" not in inspect.signature(keras.layers.BatchNormalization).parameters,
    reason=f"Keras {keras.__version__}: its BatchNormalization has no renorm",
)

CLIPPINGS = {
    "unclipped": None,
    "clipped": {"rmax": 1.2, "rmin": 0.9, "dmax": 0.3},
    "r_only": {"rmax": 1.5},
}


def _weights(rng, shape, renorm_momentum=None):
    """gamma, beta, running estimates (and renorm's own) away from the
    batch's, so that r and d are far from 1 and 0."""
    weights = [
        rng.uniform(0.5, 1.5, shape),
        rng.normal(size=shape),
        rng.normal(size=shape),
        rng.uniform(0.5, 2.0, shape),
    ]
    if renorm_momentum is not None:
        weights += [rng.normal(size=shape), rng.uniform(0.5, 2.0, shape)]
    return weights


@pytest.mark.parametrize("clipping", CLIPPINGS.values(), ids=CLIPPINGS.keys())
@pytest.mark.parametrize("renorm_momentum", [None, 0.8])
@pytest.mark.parametrize(
    "shape, axis", [((32, 5), None), ((8, 3, 4), -1), ((6, 2, 3, 3), 1)]
)
def test_training_step_is_algorithm_1(rng, clipping, renorm_momentum, shape, axis):
    x = rng.normal(2.0, 3.0, shape).astype("float32")
    epsilon, momentum = 1e-3, 0.7
    layer = BatchNormalization(
        epsilon=epsilon, momentum=momentum, axis=axis, renorm=True,
        renorm_clipping=clipping, renorm_momentum=renorm_momentum,
    )  # fmt: skip
    layer.build(shape)
    feature_axes = layer.feature_axes(len(shape))
    param_shape = tuple(shape[a] for a in feature_axes)
    weights = _weights(rng, param_shape, renorm_momentum)
    layer.set_weights(weights)
    broadcast = ref.broadcast_shape(shape, feature_axes)
    gamma, beta, running_mean, running_std = (
        np.reshape(w, broadcast) for w in weights[:4]
    )
    reference_mean, reference_std = (
        (running_mean, running_std)
        if renorm_momentum is None
        else (np.reshape(weights[4], broadcast), np.reshape(weights[5], broadcast))
    )
    axes = tuple(a for a in range(len(shape)) if a not in feature_axes)
    expected, mean, std, _, _ = ref.renorm_train(
        x, gamma, beta, reference_mean, reference_std, epsilon, clipping, axes
    )
    np.testing.assert_allclose(
        to_numpy(layer(x, training=True)), expected, rtol=2e-5, atol=2e-5
    )
    # The running estimates follow the batch's statistics at momentum; with
    # renorm_momentum, renorm's own follow them at that rate.
    got = layer.get_weights()
    updates = [(running_mean, mean, momentum), (running_std, std, momentum)]
    if renorm_momentum is not None:
        updates += [
            (reference_mean, mean, renorm_momentum),
            (reference_std, std, renorm_momentum),
        ]
    for value, (old, batch, rate) in zip(got[2:], updates):
        expected_value = ref.seed_running_update(old, batch, rate)
        np.testing.assert_allclose(
            value, np.reshape(expected_value, param_shape), rtol=1e-5, atol=1e-6
        )


def test_unclipped_training_equals_inference_with_the_estimates(rng):
    """The paper's point: r and d make the training output the inference
    output, whatever the batch."""
    x = rng.normal(-4.0, 0.5, (16, 6)).astype("float32")
    layer = BatchNormalization((6,), epsilon=1e-2, renorm=True)
    layer.set_weights(_weights(rng, (6,)))
    at_inference = to_numpy(layer(x, training=False))
    np.testing.assert_allclose(
        to_numpy(layer(x, training=True)), at_inference, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("renorm_momentum", [None, 0.5])
def test_fully_clipped_is_plain_batch_normalization(rng, renorm_momentum):
    """rmax = rmin = 1 and dmax = 0: r = 1, d = 0, the seed's own training
    step, running estimates included."""
    x = rng.normal(1.0, 2.0, (20, 4)).astype("float32")
    weights = _weights(rng, (4,), renorm_momentum)
    renormalized = BatchNormalization(
        (4,), renorm=True, renorm_momentum=renorm_momentum,
        renorm_clipping={"rmax": 1.0, "rmin": 1.0, "dmax": 0.0},
    )  # fmt: skip
    renormalized.set_weights(weights)
    mean, std = ref.seed_batch_statistics(x, 1e-6)
    expected = ref.seed_featurewise(x, weights[0], weights[1], mean, std, 1e-6)
    np.testing.assert_allclose(
        to_numpy(renormalized(x, training=True)), expected, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        renormalized.get_weights()[2],
        ref.seed_running_update(weights[2], mean[0], 0.9),
        rtol=1e-5,
    )


@pytest.mark.parametrize("clipping", CLIPPINGS.values(), ids=CLIPPINGS.keys())
def test_gradients_hold_r_and_d_constant(rng, clipping):
    """The gradients of ``sum(y * upstream)`` are those of the formula with
    r and d held at their values (finite differences in float64)."""
    x = rng.normal(1.0, 2.0, (6, 3))
    upstream = rng.normal(size=(6, 3))
    epsilon = 1e-3
    weights = _weights(rng, (3,))
    gamma, beta, running_mean, running_std = weights
    _, _, _, r, d = ref.renorm_train(
        x, gamma, beta, running_mean, running_std, epsilon, clipping
    )

    def loss(x, gamma, beta):
        mean, std = ref.seed_batch_statistics(x, epsilon)
        x_hat = (x - mean) / (std + epsilon)
        return np.sum((gamma * (x_hat * r + d) + beta) * upstream)

    with dtype_scope("float64"):
        layer = BatchNormalization(
            (3,), epsilon=epsilon, renorm=True, renorm_clipping=clipping,
            dtype="float64",
        )  # fmt: skip
        layer.set_weights(weights)
        _, grads = loss_and_gradients(layer, x, upstream, training=True)
    expected = [
        numeric_gradient(lambda v: loss(v, gamma, beta), x),
        numeric_gradient(lambda v: loss(x, v, beta), gamma),
        numeric_gradient(lambda v: loss(x, gamma, v), beta),
    ]
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8)


def test_masks_and_ghost_batches(rng):
    x = rng.normal(1.0, 2.0, (8, 5, 3)).astype("float32")
    mask = rng.uniform(size=(8, 5)) > 0.3
    weights = _weights(rng, (3,))
    clipping = CLIPPINGS["clipped"]
    layer = BatchNormalization(axis=-1, renorm=True, renorm_clipping=clipping)
    layer.build(x.shape)
    layer.set_weights(weights)
    expected, *_ = ref.renorm_train(
        x, *weights, 1e-6, clipping, (0, 1), mask[..., None]
    )
    got = to_numpy(layer(x, training=True, mask=mask))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)
    # Ghost batches: each run of 4 samples corrected with its own statistics.
    ghosts = BatchNormalization(
        axis=-1, renorm=True, renorm_clipping=clipping, virtual_batch_size=4
    )
    ghosts.build(x.shape)
    ghosts.set_weights(weights)
    expected = np.concatenate(
        [ref.renorm_train(x[i : i + 4], *weights, 1e-6, clipping, (0, 1))[0]
         for i in (0, 4)]
    )  # fmt: skip
    got = to_numpy(ghosts(x, training=True))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_mixed_precision(rng):
    x = rng.normal(1.0, 2.0, (16, 4)).astype("float16")
    weights = _weights(rng, (4,))
    layer = BatchNormalization((4,), renorm=True, dtype="mixed_float16")
    layer.set_weights(weights)
    y = layer(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    expected, *_ = ref.renorm_train(x.astype("float32"), *weights, 1e-6)
    np.testing.assert_allclose(to_numpy(y).astype("float64"), expected, atol=2e-2)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"renorm": 1}, TypeError, "renorm: expected True or False"),
        ({"renorm": True, "renorm_clipping": {"rmax": 2, "dmin": 1}}, ValueError,
         "renorm_clipping: unknown keys ['dmin']"),
        ({"renorm": True, "renorm_clipping": {"rmax": 0.5, "rmin": 2}}, ValueError,
         "rmax must be >= rmin"),
        ({"renorm": True, "renorm_clipping": {"dmax": -1}}, ValueError,
         "renorm_clipping['dmax']"),
        ({"renorm": True, "renorm_clipping": [("rmax", 2)]}, TypeError,
         "renorm_clipping: expected None or a dict"),
        ({"renorm": True, "renorm_momentum": 1.5}, ValueError,
         "renorm_momentum: expected None or a number in [0, 1]"),
        ({"renorm_momentum": 0.9}, ValueError, "renorm_momentum: applies with renorm"),
        ({"renorm_clipping": {"rmax": 2}}, ValueError,
         "renorm_clipping: applies with renorm"),
        ({"renorm": True, "mode": 1}, ValueError, "mode 0 (featurewise) only"),
        ({"renorm": True, "mode": 2}, ValueError, "mode 0 (featurewise) only"),
    ],
)  # fmt: skip
def test_bad_renorm_arguments(kwargs, error, message):
    with pytest.raises(error) as raised:
        BatchNormalization((3,), **kwargs)
    assert message in str(raised.value)


@pytest.mark.parametrize("renorm_momentum", [None, 0.95])
def test_config_and_saving_round_trip(tmp_path, rng, renorm_momentum):
    layer = BatchNormalization(
        (3,), renorm=True, renorm_clipping={"rmax": 3, "dmax": 5},
        renorm_momentum=renorm_momentum,
    )  # fmt: skip
    layer.set_weights(_weights(rng, (3,), renorm_momentum))
    config = layer.get_config()
    assert config["renorm"] is True
    assert config["renorm_clipping"] == {"rmax": 3.0, "dmax": 5.0}
    assert config["renorm_momentum"] == renorm_momentum
    assert BatchNormalization.from_config(config).get_config() == config
    model = keras.Sequential([keras.Input((3,)), layer])
    model.save(tmp_path / "renorm.keras")
    loaded = keras.saving.load_model(tmp_path / "renorm.keras")
    names = ["gamma", "beta", "running_mean", "running_std"]
    if renorm_momentum is not None:
        names += ["renorm_mean", "renorm_std"]
    assert [w.name for w in loaded.layers[0].weights] == names
    for saved, got in zip(layer.get_weights(), loaded.layers[0].get_weights()):
        np.testing.assert_array_equal(saved, got)
    x = rng.normal(size=(4, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(loaded(x, training=True)), to_numpy(layer(x, training=True)),
        rtol=1e-6,
    )  # fmt: skip


def test_renorm_std_is_checked_like_running_std(rng):
    layer = BatchNormalization((3,), renorm=True, renorm_momentum=0.9)
    weights = _weights(rng, (3,), 0.9)
    weights[5] = -weights[5]
    before = layer.get_weights()
    with pytest.raises(ValueError, match="renorm_std is a standard deviation"):
        layer.set_weights(weights)
    for old, now in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(old, now)


@stock_renorm
@pytest.mark.parametrize("renorm_momentum", [0.99, 0.5])
def test_from_keras_renorm_layer(rng, renorm_momentum):
    """Keras' own renorm layer, converted: equal at inference, and its
    renorm estimates give the same d (r differs by eps / renorm_stddev)."""
    stock = keras.layers.BatchNormalization(
        epsilon=1e-3, renorm=True, renorm_momentum=renorm_momentum,
        renorm_clipping={"rmax": 2.0, "rmin": 0.5, "dmax": 1.0},
    )  # fmt: skip
    x = rng.normal(3.0, 2.0, (64, 4)).astype("float32")
    stock(x, training=False)
    for _ in range(5):
        stock(x + rng.normal(size=x.shape).astype("float32"), training=True)
    converted = convert.from_keras(stock)
    assert converted.renorm and converted.renorm_momentum == renorm_momentum
    assert converted.renorm_clipping == {"rmax": 2.0, "rmin": 0.5, "dmax": 1.0}
    np.testing.assert_allclose(
        to_numpy(converted(x, training=False)), to_numpy(stock(x, training=False)),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    np.testing.assert_allclose(
        to_numpy(converted.renorm_std) + 1e-3, to_numpy(stock.renorm_stddev),
        rtol=1e-6,
    )  # fmt: skip
    back = convert.to_keras(converted)
    assert back.renorm and back.renorm_momentum == renorm_momentum
    np.testing.assert_allclose(
        to_numpy(back(x, training=False)), to_numpy(stock(x, training=False)),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


@stock_renorm
def test_to_keras_without_renorm_momentum_trains_as_keras_does(rng):
    """Without renorm_momentum, r and d follow the running estimates: Keras'
    layer with both rates equal and its renorm estimates started at them
    computes the same d (and r up to the seed's epsilon in its numerator)."""
    layer = BatchNormalization((4,), epsilon=1e-3, renorm=True)
    layer.set_weights(_weights(rng, (4,)))
    stock = convert.to_keras(layer)
    assert stock.renorm_momentum == layer.momentum
    x = rng.normal(size=(32, 4)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(stock(x, training=False)), to_numpy(layer(x, training=False)),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    np.testing.assert_allclose(
        to_numpy(stock.renorm_stddev), to_numpy(layer.running_std) + 1e-3, rtol=1e-6
    )


def test_folding_and_recomputing_treat_renorm_as_mode_0(rng):
    x = rng.normal(2.0, 3.0, (40, 5)).astype("float32")
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4, use_bias=False),
         BatchNormalization(renorm=True, renorm_momentum=0.9)]
    )  # fmt: skip
    model(x)
    recompute_statistics(model, x, verbose=0)
    layer = model.layers[1]
    hidden = to_numpy(model.layers[0](x)).astype("float64")
    mean, std = ref.seed_batch_statistics(hidden, layer.epsilon)
    for variable, expected in zip(
        [layer.running_mean, layer.running_std, layer.renorm_mean, layer.renorm_std],
        [mean, std, mean, std],
    ):
        np.testing.assert_allclose(to_numpy(variable), expected[0], rtol=1e-5)
    folded, report = fold_batchnorm(model, return_report=True)
    assert list(report.folded) == [layer.name]
    np.testing.assert_allclose(
        to_numpy(folded(x)), to_numpy(model(x, training=False)), rtol=1e-4, atol=1e-4
    )
