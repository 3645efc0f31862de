"""The options shared with keras.layers.BatchNormalization: axis, center and
scale, initializers, regularizers, constraints, masking, mixed precision."""

import keras
import numpy as np
import pytest
from conftest import (
    BACKEND,
    dtype_scope,
    loss_and_gradients,
    numeric_gradient,
    to_numpy,
)
from reference import (
    broadcast_shape,
    keras1_samplewise,
    seed_batch_statistics,
    seed_featurewise,
    seed_running_update,
    seed_samplewise,
    variance_form,
)

from keras_bn import BatchNormalization

# -- axis -----------------------------------------------------------------------

AXES = [(-1, (3,)), (1, (5,)), ((1, 2), (5, 4)), ((1, -1), (5, 3)), (None, (5, 4, 3))]


@pytest.mark.parametrize("axis, param_shape", AXES)
def test_axis_per_feature_map_statistics(rng, axis, param_shape):
    x = rng.normal(1.0, 2.0, size=(6, 5, 4, 3)).astype("float32")
    layer = BatchNormalization(axis=axis, momentum=0.6)
    gamma = rng.uniform(0.5, 1.5, param_shape)
    beta = rng.normal(size=param_shape)
    layer.build(x.shape)
    layer.set_weights([gamma, beta, np.zeros(param_shape), np.ones(param_shape)])
    assert layer.get_weights()[0].shape == param_shape

    feature_axes = {1, 2, 3} if axis is None else {a % 4 for a in np.atleast_1d(axis)}
    reduction_axes = tuple(a for a in range(4) if a not in feature_axes)
    shape = broadcast_shape(x.shape, feature_axes)
    g, b = gamma.reshape(shape), beta.reshape(shape)
    mean, std = seed_batch_statistics(x, 1e-6, reduction_axes)
    np.testing.assert_allclose(
        to_numpy(layer(x, training=True)),
        seed_featurewise(x, g, b, mean, std, 1e-6),
        rtol=1e-5,
        atol=2e-5,
    )
    running_mean = seed_running_update(0.0, mean, 0.6)
    running_std = seed_running_update(1.0, std, 0.6)
    np.testing.assert_allclose(
        layer.get_weights()[2], running_mean.reshape(param_shape), atol=1e-5
    )
    np.testing.assert_allclose(
        layer.get_weights()[3], running_std.reshape(param_shape), atol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(layer(x)),
        seed_featurewise(x, g, b, running_mean, running_std, 1e-6),
        rtol=1e-5,
        atol=2e-5,
    )


@pytest.mark.parametrize("training", [True, False])
def test_mode1_with_axis_is_samplewise_over_the_last_axis(rng, training):
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    layer = BatchNormalization(mode=1, axis=1)
    layer.build(x.shape)
    gamma, beta = rng.uniform(0.5, 1.5, (5,)), rng.normal(size=(5,))
    layer.set_weights([gamma, beta, np.zeros(5), np.ones(5)])
    expected = seed_samplewise(x, gamma.reshape(1, 5, 1), beta.reshape(1, 5, 1), 1e-6)
    np.testing.assert_allclose(
        to_numpy(layer(x, training=training)), expected, rtol=1e-5, atol=2e-5
    )


def test_matches_stock_keras_layer_with_converted_statistics(rng):
    """Both forms agree at inference when rs = sqrt(mv + ek) - e."""
    x = rng.normal(size=(32, 4, 6)).astype("float32")
    stock = keras.layers.BatchNormalization(axis=-1, epsilon=1e-3)
    stock.build(x.shape)
    gamma, beta = rng.uniform(0.5, 1.5, 6), rng.normal(size=6)
    moving_mean, moving_variance = rng.normal(size=6), rng.uniform(0.2, 3.0, 6)
    stock.set_weights([gamma, beta, moving_mean, moving_variance])
    ours = BatchNormalization(axis=-1, epsilon=1e-6)
    ours.build(x.shape)
    running_std = np.sqrt(moving_variance + 1e-3) - 1e-6
    ours.set_weights([gamma, beta, moving_mean, running_std])
    np.testing.assert_allclose(
        to_numpy(ours(x)), to_numpy(stock(x)), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(ours(x)),
        variance_form(x, gamma, beta, moving_mean, moving_variance, 1e-3),
        rtol=1e-5,
        atol=1e-5,
    )


def test_running_statistics_match_stock_keras_layer(rng):
    """Same batch mean; running_std**2 - epsilon is the stock layer's variance
    (momentum 0 keeps exactly the last batch's statistics)."""
    x = rng.normal(2.0, 3.0, size=(64, 5, 3)).astype("float32")
    stock = keras.layers.BatchNormalization(axis=-1, momentum=0.0, epsilon=1e-3)
    ours = BatchNormalization(axis=-1, momentum=0.0, epsilon=1e-3)
    stock(x, training=True)
    ours(x, training=True)
    _, _, moving_mean, moving_variance = stock.get_weights()
    _, _, running_mean, running_std = ours.get_weights()
    np.testing.assert_allclose(running_mean, moving_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        running_std**2 - 1e-3, moving_variance, rtol=1e-4, atol=1e-5
    )


# -- center and scale -------------------------------------------------------------


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_center_and_scale(rng, center, scale, training):
    x = rng.normal(size=(8, 3)).astype("float32")
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    running_mean, running_std = rng.normal(size=3), rng.uniform(0.5, 2, 3)
    weights = (
        ([gamma] if scale else [])
        + ([beta] if center else [])
        + [running_mean, running_std]
    )
    layer = BatchNormalization((3,), center=center, scale=scale, weights=weights)
    assert len(layer.get_weights()) == len(weights)
    assert [w.name for w in layer.trainable_weights] == (["gamma"] if scale else []) + (
        ["beta"] if center else []
    )
    g = gamma if scale else 1.0
    b = beta if center else 0.0
    if training:
        mean, std = seed_batch_statistics(x, 1e-6)
    else:
        mean, std = running_mean, running_std
    np.testing.assert_allclose(
        to_numpy(layer(x, training=training)),
        seed_featurewise(x, g, b, mean, std, 1e-6),
        rtol=1e-5,
        atol=2e-5,
    )
    with pytest.raises(ValueError, match=f"{len(weights)} arrays"):
        layer.set_weights(weights + [gamma])


# -- initializers, regularizers, constraints -------------------------------------

ALL_OPTIONS = dict(
    input_shape=(4, 3),
    epsilon=1e-3,
    mode=1,
    momentum=0.8,
    axis=-1,
    center=False,
    scale=True,
    gamma_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=3),
    beta_initializer="ones",
    running_mean_initializer=keras.initializers.Constant(0.5),
    running_std_initializer="ones",
    gamma_regularizer=keras.regularizers.L2(0.01),
    beta_regularizer="l1",
    gamma_constraint=keras.constraints.NonNeg(),
    beta_constraint=keras.constraints.MaxNorm(2.0),
    virtual_batch_size=2,
    samplewise_epsilon_in_root=True,
    name="every_option",
)


def test_every_option_survives_config_and_saving(tmp_path, rng):
    layer = BatchNormalization(**ALL_OPTIONS)
    config = layer.get_config()
    clone = BatchNormalization.from_config(config)
    assert clone.get_config() == config
    assert isinstance(clone.gamma_constraint, keras.constraints.NonNeg)
    assert isinstance(clone.gamma_regularizer, keras.regularizers.L2)
    np.testing.assert_allclose(clone.get_weights()[1], 0.5)  # running_mean init

    model = keras.Sequential([layer])
    x = rng.normal(size=(6, 4, 3)).astype("float32")
    expected = to_numpy(model(x))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].get_config() == config
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=1e-6)


def test_initializers_by_name_and_object():
    layer = BatchNormalization(
        (2, 3),
        axis=1,
        gamma_initializer=keras.initializers.Constant(2.0),
        beta_initializer="ones",
        running_mean_initializer="ones",
        running_std_initializer=keras.initializers.Constant(3.0),
    )
    gamma, beta, running_mean, running_std = layer.get_weights()
    np.testing.assert_array_equal(gamma, np.full((2,), 2.0))
    np.testing.assert_array_equal(beta, np.ones(2))
    np.testing.assert_array_equal(running_mean, np.ones(2))
    np.testing.assert_array_equal(running_std, np.full((2,), 3.0))


def test_regularizers_add_their_losses(rng):
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    layer = BatchNormalization(
        (3,),
        weights=[gamma, beta, np.zeros(3), np.ones(3)],
        gamma_regularizer=keras.regularizers.L2(0.1),
        beta_regularizer=keras.regularizers.L1(0.2),
    )
    total = sum(float(to_numpy(loss)) for loss in layer.losses)
    expected = 0.1 * np.sum(gamma**2) + 0.2 * np.sum(np.abs(beta))
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_constraints_apply_after_each_step(rng):
    x = rng.normal(size=(32, 3)).astype("float32")
    model = keras.Sequential(
        [BatchNormalization((3,), gamma_constraint=keras.constraints.NonNeg())]
    )
    # The target pulls gamma strongly negative; NonNeg clips it at 0.
    model.compile(keras.optimizers.SGD(1.0), "mse")
    model.fit(x, -5.0 * x, batch_size=32, epochs=3, verbose=0)
    assert np.all(model.layers[0].get_weights()[0] >= 0.0)


# -- masking ------------------------------------------------------------------------


# A large epsilon too: at 1e-6, dropping it from either place moves the
# statistics by less than the tolerance.
@pytest.mark.parametrize("epsilon", [1e-6, 0.5])
@pytest.mark.parametrize("axis", [None, -1])
def test_masked_positions_enter_no_statistics(rng, axis, epsilon):
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    mask = rng.uniform(size=(6, 5)) > 0.3
    mask[:, 0] = True  # every per-activation statistic keeps some samples
    x_with_garbage = np.where(mask[..., None], x, 1e4).astype("float32")
    layer = BatchNormalization(axis=axis, momentum=0.0, epsilon=epsilon)
    y = to_numpy(layer(x_with_garbage, training=True, mask=mask))
    reduction_axes = (0,) if axis is None else (0, 1)
    mean, std = seed_batch_statistics(x, epsilon, reduction_axes, mask[..., None])
    expected = seed_featurewise(x, 1.0, 0.0, mean, std, epsilon)
    np.testing.assert_allclose(y[mask], expected[mask], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        layer.get_weights()[2], mean.reshape(layer.get_weights()[2].shape), atol=1e-4
    )
    np.testing.assert_allclose(
        layer.get_weights()[3], std.reshape(layer.get_weights()[3].shape), atol=1e-4
    )


@pytest.mark.parametrize("masking_layer", ["embedding", "masking"])
def test_mask_propagates_from_embedding_and_masking(rng, masking_layer):
    if masking_layer == "embedding":
        tokens = rng.integers(1, 10, size=(8, 6))
        tokens[:, 4:] = 0
        data = tokens
        first = keras.layers.Embedding(10, 3, mask_zero=True)
    else:
        data = rng.normal(size=(8, 6, 3)).astype("float32")
        data[:, 4:] = 0.0
        first = keras.layers.Masking(0.0)
    layer = BatchNormalization(axis=-1, momentum=0.0)
    model = keras.Sequential([first, layer])
    model(data, training=True)  # Keras hands the mask on to the next layer
    features = to_numpy(first(data))[:, :4].reshape(-1, 3)
    np.testing.assert_allclose(layer.get_weights()[2], features.mean(0), atol=1e-5)
    np.testing.assert_allclose(
        layer.get_weights()[3], np.sqrt(features.var(0) + 1e-6), atol=1e-5
    )
    assert layer.supports_masking


def test_mask_of_the_wrong_shape(rng):
    layer = BatchNormalization(axis=-1)
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    with pytest.raises(ValueError, match="mask"):
        layer(x, training=True, mask=np.ones((4, 6), dtype=bool))
    with pytest.raises(ValueError, match="mask"):
        layer(x, training=True, mask=np.ones((4,), dtype=bool))


# -- mixed precision ---------------------------------------------------------------


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(rng, policy):
    compute = policy.split("_")[1]
    x = rng.uniform(-6e4, 6e4, size=(32, 4, 3)).astype("float32")
    layer = BatchNormalization(axis=-1, dtype=policy)
    y = layer(keras.ops.cast(x, compute), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert all(w.dtype == "float32" for w in layer.weights)
    assert np.all(np.isfinite(to_numpy(keras.ops.cast(y, "float32"))))
    for array in layer.get_weights():
        assert np.all(np.isfinite(array))
    x_seen = to_numpy(keras.ops.cast(keras.ops.cast(x, compute), "float32"))
    mean, std = seed_batch_statistics(x_seen, 1e-6, (0, 1))
    np.testing.assert_allclose(
        layer.get_weights()[2], 0.1 * mean.ravel(), rtol=1e-4, atol=1.0
    )
    np.testing.assert_allclose(
        layer.get_weights()[3], 0.9 + 0.1 * std.ravel(), rtol=1e-4
    )
    inference = to_numpy(keras.ops.cast(layer(keras.ops.cast(x, compute)), "float32"))
    assert np.all(np.isfinite(inference))


# -- bad values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(axis=3), "out of range"),
        (dict(axis=-4), "out of range"),
        (dict(axis=(1, -2)), "same axis"),
        (dict(axis=0), "batch axis"),
    ],
)
def test_bad_axis_at_build_leaves_the_layer_unbuilt(rng, kwargs, message):
    layer = BatchNormalization(**kwargs)
    with pytest.raises(ValueError, match=message):
        layer(rng.normal(size=(2, 3, 4)).astype("float32"))
    assert not layer.built and not layer.weights


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(axis=(1, 1)), ValueError, "axis: expected distinct axes"),
        (dict(axis="channels"), TypeError, "axis"),
        (dict(axis=(1, 2.0)), TypeError, "axis"),
        (dict(axis=()), ValueError, "axis"),
        (dict(gamma_initializer="no_such_initializer"), ValueError, "initializer"),
        (dict(beta_regularizer="no_such_regularizer"), ValueError, "regularizer"),
        (dict(virtual_batch_size=0), ValueError, "virtual_batch_size"),
        (dict(virtual_batch_size=2.0), TypeError, "virtual_batch_size"),
    ],
)
def test_bad_option_values(kwargs, error, message):
    with pytest.raises(error, match=message):
        BatchNormalization(**kwargs)


# -- Keras' own layer contract, with options ------------------------------------------


@pytest.mark.skipif(
    not (3, 10) <= tuple(int(p) for p in keras.__version__.split(".")[:2]) < (3, 16),
    reason="run_layer_test is private Keras API, checked on Keras 3.10 to 3.15",
)
@pytest.mark.parametrize(
    "kwargs, trainable",
    [
        (dict(axis=-1, center=False), 1),
        (dict(axis=(1, 2), scale=False, mode=1), 1),
        (dict(axis=1, gamma_regularizer="l2"), 2),
    ],
)
def test_keras_layer_contract_with_options(kwargs, trainable):
    from keras.src.testing import TestCase

    TestCase().run_layer_test(
        BatchNormalization,
        init_kwargs=kwargs,
        input_shape=(4, 3, 2),
        expected_output_shape=(4, 3, 2),
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=2,
        expected_num_losses=1 if "gamma_regularizer" in kwargs else 0,
        supports_masking=True,
    )


def test_a_feature_masked_everywhere_keeps_its_running_estimates(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    mask = np.ones((4, 2), dtype=bool)
    mask[:, 0] = False  # time step 0 is hidden in every sample
    layer = BatchNormalization(momentum=0.5, running_mean_initializer="ones")
    layer(x, training=True, mask=mask)
    running_mean, running_std = layer.get_weights()[2:]
    np.testing.assert_array_equal(running_mean[0], np.ones(3))
    np.testing.assert_array_equal(running_std[0], np.ones(3))
    mean, std = seed_batch_statistics(x[:, 1], 1e-6)
    np.testing.assert_allclose(running_mean[1], 0.5 + 0.5 * mean[0], atol=1e-5)
    np.testing.assert_allclose(running_std[1], 0.5 + 0.5 * std[0], atol=1e-5)


def test_masked_ghost_batches_weigh_their_statistics_by_count(rng):
    x = rng.normal(size=(8, 3, 2)).astype("float32")
    mask = rng.uniform(size=(8, 3)) > 0.4
    mask[0] = True
    mask[4:] = False  # the second ghost batch is hidden entirely
    layer = BatchNormalization(axis=-1, momentum=0.0, virtual_batch_size=4)
    layer(x, training=True, mask=mask)
    ghost_mask = mask[:4, :, None]
    mean, std = seed_batch_statistics(x[:4], 1e-6, (0, 1), ghost_mask)
    np.testing.assert_allclose(layer.get_weights()[2], mean.ravel(), atol=1e-5)
    np.testing.assert_allclose(layer.get_weights()[3], std.ravel(), atol=1e-5)


# -- samplewise_epsilon_in_root (Keras 1.x's mode 1) ------------------------------


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("axis", [None, 1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_samplewise_epsilon_in_root_is_keras1_mode1(rng, dtype, axis, training):
    epsilon = 0.1  # large enough for the two forms to differ well beyond rounding
    with dtype_scope(dtype):
        x = rng.normal(1.0, 0.5, size=(6, 4, 3)).astype(dtype)
        param_shape = (4, 3) if axis is None else (4,)
        gamma = rng.uniform(0.5, 1.5, param_shape)
        beta = rng.normal(size=param_shape)
        layer = BatchNormalization(
            epsilon=epsilon,
            mode=1,
            momentum=0.5,
            axis=axis,
            samplewise_epsilon_in_root=True,
            dtype=dtype,
        )
        layer.build(x.shape)
        layer.set_weights([gamma, beta, np.zeros(param_shape), np.ones(param_shape)])
        y = to_numpy(layer(x, training=training))
        running_mean, running_std = layer.get_weights()[2:]
    shape = (1, 4, 3) if axis is None else (1, 4, 1)
    expected = keras1_samplewise(x, gamma.reshape(shape), beta.reshape(shape), epsilon)
    seed = seed_samplewise(x, gamma.reshape(shape), beta.reshape(shape), epsilon)
    assert np.max(np.abs(expected - seed)) > 1e-2
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance)
    # The running estimates follow the seed's update either way.
    axes = (0,) if axis is None else (0, 2)
    mean, std = seed_batch_statistics(x, epsilon, axes)
    if not training:
        mean, std = np.zeros_like(mean), np.ones_like(std)
    np.testing.assert_allclose(
        running_mean,
        seed_running_update(0.0, mean, 0.5).reshape(param_shape),
        rtol=tolerance,
        atol=tolerance,
    )
    np.testing.assert_allclose(
        running_std,
        seed_running_update(1.0, std, 0.5).reshape(param_shape),
        rtol=tolerance,
        atol=tolerance,
    )


@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4)])
def test_samplewise_epsilon_in_root_gradients_match_finite_differences(rng, shape):
    epsilon = 0.05
    with dtype_scope("float64"):
        x = rng.normal(1.0, 0.3, size=shape)
        gamma, beta = rng.uniform(0.5, 1.5, shape[1:]), rng.normal(size=shape[1:])
        upstream = rng.normal(size=shape)
        layer = BatchNormalization(
            shape[1:],
            epsilon,
            1,
            weights=[gamma, beta, np.zeros(shape[1:]), np.ones(shape[1:])],
            dtype="float64",
            samplewise_epsilon_in_root=True,
        )
        _, (dx, dgamma, dbeta) = loss_and_gradients(layer, x, upstream, training=True)

    def loss(x, gamma, beta):
        return np.sum(keras1_samplewise(x, gamma, beta, epsilon) * upstream)

    for got, wrt, expected_of in [
        (dx, x, lambda v: loss(v, gamma, beta)),
        (dgamma, gamma, lambda v: loss(x, v, beta)),
        (dbeta, beta, lambda v: loss(x, gamma, v)),
    ]:
        np.testing.assert_allclose(
            got, numeric_gradient(expected_of, wrt), rtol=1e-6, atol=1e-7
        )


def test_samplewise_epsilon_in_root_is_off_by_default_and_in_the_config():
    assert BatchNormalization(mode=1).samplewise_epsilon_in_root is False
    layer = BatchNormalization((3,), mode=1, samplewise_epsilon_in_root=True)
    config = layer.get_config()
    assert config["samplewise_epsilon_in_root"] is True
    assert BatchNormalization.from_config(config).samplewise_epsilon_in_root is True
    # Configs saved before the option existed load as the seed's form.
    del config["samplewise_epsilon_in_root"]
    assert BatchNormalization.from_config(config).samplewise_epsilon_in_root is False


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(samplewise_epsilon_in_root=True), ValueError, "mode 1.*mode=0"),
        (dict(mode=1, samplewise_epsilon_in_root=1), TypeError, "True or False"),
        (dict(mode=1, samplewise_epsilon_in_root="yes"), TypeError, "True or False"),
    ],
)
def test_bad_samplewise_epsilon_in_root(kwargs, error, message):
    with pytest.raises(error, match="samplewise_epsilon_in_root.*" + message):
        BatchNormalization(**kwargs)


# -- empty batches ---------------------------------------------------------------

EMPTY_CASES = [
    dict(mode=0),
    dict(mode=1),
    dict(mode=0, axis=-1),
    dict(mode=0, virtual_batch_size=2),
    dict(mode=0, skip_non_finite=True),
]


def empty_batch_call(layer, x, compiled):
    """``layer(x, training=True)``: eagerly, or compiled with the batch size
    unknown until run time where the backend allows it."""
    if not compiled:
        return to_numpy(layer(x, training=True))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        call = tf.function(
            lambda t: layer(t, training=True),
            input_signature=[tf.TensorSpec((None, *x.shape[1:]), x.dtype)],
        )
        return call(x).numpy()
    if BACKEND == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        y, non_trainable = jax.jit(
            lambda t, n, x: layer.stateless_call(t, n, x, training=True)
        )(trainable, non_trainable, x)
        for variable, value in zip(layer.non_trainable_variables, non_trainable):
            variable.assign(value)
        return np.asarray(y)
    pytest.skip("PyTorch runs eagerly: the batch size is always known")


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("kwargs", EMPTY_CASES, ids=str)
def test_an_empty_batch_leaves_the_running_estimates_alone(rng, kwargs, compiled):
    layer = BatchNormalization((4, 3), momentum=0.5, **kwargs)
    before = layer.get_weights()
    x = np.zeros((0, 4, 3), dtype="float32")
    y = empty_batch_call(layer, x, compiled)
    assert y.shape == (0, 4, 3)
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    # A batch with samples still updates them afterwards.
    x = rng.normal(2.0, 3.0, size=(6, 4, 3)).astype("float32")
    layer(x, training=True)
    assert not np.allclose(layer.get_weights()[-2], before[-2])


def test_an_empty_batch_has_zero_gradients():
    x = np.zeros((0, 4, 3))
    with dtype_scope("float64"):
        layer = BatchNormalization((4, 3), dtype="float64")
        loss, (dx, dgamma, dbeta) = loss_and_gradients(
            layer, x, np.zeros_like(x), training=True
        )
    assert loss == 0.0 and dx.shape == (0, 4, 3)
    np.testing.assert_array_equal(dgamma, np.zeros((4, 3)))
    np.testing.assert_array_equal(dbeta, np.zeros((4, 3)))


# -- skip_non_finite -------------------------------------------------------------


def poisoned_batch(rng, shape):
    """A batch with NaN and +-inf at scattered positions, and one feature
    (the first along the last axis, at every other position) non-finite
    throughout."""
    x = rng.normal(2.0, 3.0, size=shape)
    flat = x.reshape(-1)
    positions = rng.choice(flat.size, size=flat.size // 6, replace=False)
    flat[positions[0::3]] = np.nan
    flat[positions[1::3]] = np.inf
    flat[positions[2::3]] = -np.inf
    x[..., 0] = np.nan
    return x.astype("float32")


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("axis", [None, -1])
@pytest.mark.parametrize("mode", [0, 1])
def test_skip_non_finite_keeps_the_running_estimates_clean(rng, mode, axis, with_mask):
    shape = (16, 5, 3)
    x = poisoned_batch(rng, shape)
    mask = rng.uniform(size=shape[:2]) > 0.3 if with_mask else None
    layer = BatchNormalization(
        epsilon=1e-3, mode=mode, momentum=0.25, axis=axis, skip_non_finite=True
    )
    y = to_numpy(layer(x, training=True, mask=mask))
    running_mean, running_std = layer.get_weights()[2:]

    feature_axes = {1, 2} if axis is None else {2}
    axes = tuple(a for a in range(3) if a not in feature_axes)
    param_shape = running_mean.shape
    kept = np.isfinite(x)
    if mask is not None:
        kept &= mask[..., None]
    seen = np.sum(kept, axis=axes, keepdims=True).reshape(param_shape) > 0
    with np.errstate(invalid="ignore"):  # 0 / 0 where a feature has no value
        mean, std = seed_batch_statistics(
            np.where(kept, x, 0.0), 1e-3, axes, kept.astype("float64")
        )
    expected_mean = np.where(
        seen, seed_running_update(0.0, mean.reshape(param_shape), 0.25), 0.0
    )
    expected_std = np.where(
        seen, seed_running_update(1.0, std.reshape(param_shape), 0.25), 1.0
    )
    assert not np.all(seen) and np.any(seen)  # both cases are tested
    np.testing.assert_allclose(running_mean, expected_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(running_std, expected_std, rtol=1e-5, atol=1e-5)

    # The output is the one without the option: the whole batch's statistics.
    reference = BatchNormalization(epsilon=1e-3, mode=mode, axis=axis)
    np.testing.assert_allclose(
        y, to_numpy(reference(x, training=True, mask=mask)), rtol=1e-6, atol=1e-6
    )
    # ... whose running estimates the batch poisons.
    assert not np.all(np.isfinite(reference.get_weights()[2]))


def test_skip_non_finite_with_ghost_batches(rng):
    x = poisoned_batch(rng, (8, 3, 2))
    x[4:, :, 1] = np.nan  # feature 1 has no finite value in the second ghost
    layer = BatchNormalization(
        epsilon=1e-3, axis=-1, momentum=0.0, virtual_batch_size=4, skip_non_finite=True
    )
    layer(x, training=True)
    # The ghost batches' statistics, weighted by their finite counts.
    kept = np.isfinite(x)
    means, stds, counts = [], [], []
    for ghost in (slice(0, 4), slice(4, 8)):
        g, k = x[ghost], kept[ghost]
        with np.errstate(invalid="ignore"):  # 0 / 0 where a feature has no value
            m, s = seed_batch_statistics(np.where(k, g, 0.0), 1e-3, (0, 1), k)
        means.append(np.nan_to_num(m.ravel()))
        stds.append(np.nan_to_num(s.ravel()))
        counts.append(k.sum(axis=(0, 1)))
    counts = np.array(counts, dtype="float64")
    weights = counts / np.maximum(counts.sum(axis=0), 1)
    seen = counts.sum(axis=0) > 0
    expected_mean = np.where(seen, np.sum(weights * np.array(means), axis=0), 0.0)
    expected_std = np.where(seen, np.sum(weights * np.array(stds), axis=0), 1.0)
    np.testing.assert_allclose(layer.get_weights()[2], expected_mean, atol=1e-5)
    np.testing.assert_allclose(layer.get_weights()[3], expected_std, atol=1e-5)


@pytest.mark.parametrize(
    "values",
    [
        # finite, but the sum over the batch is not
        np.full(8, 3e38),
        # a finite mean, an infinite variance (the squares pass float32's range)
        np.where(np.arange(8) % 2, 3e19, -3e19),
    ],
    ids=["sum", "variance"],
)
def test_skip_non_finite_keeps_estimates_whose_statistics_overflow(rng, values):
    """Both of the feature's estimates keep their values whichever of its
    statistics overflows; the other feature's follow the batch."""
    x = rng.normal(size=(8, 2)).astype("float32")
    x[:, 0] = values
    layer = BatchNormalization(momentum=0.5, skip_non_finite=True)
    layer(x, training=True)
    running_mean, running_std = layer.get_weights()[2:]
    assert (running_mean[0], running_std[0]) == (0.0, 1.0)
    mean, std = seed_batch_statistics(x[:, 1:], 1e-6)
    np.testing.assert_allclose(running_mean[1], 0.5 * mean[0, 0], atol=1e-6)
    np.testing.assert_allclose(running_std[1], 0.5 + 0.5 * std[0, 0], atol=1e-6)


def test_skip_non_finite_is_off_by_default_and_in_the_config():
    assert BatchNormalization().skip_non_finite is False
    config = BatchNormalization((3,), skip_non_finite=True).get_config()
    assert config["skip_non_finite"] is True
    assert BatchNormalization.from_config(config).skip_non_finite is True
    with pytest.raises(TypeError, match="skip_non_finite: expected True or False"):
        BatchNormalization(skip_non_finite="yes")


@pytest.mark.parametrize(
    "shape, axis", [((8, 1), None), ((6, 1, 1, 2), None), ((5, 1, 3), 1)]
)
def test_sizes_of_one_keep_their_axes(rng, shape, axis):
    """A single feature, and feature shapes with 1s: the statistics and the
    running estimates keep every axis (no squeeze)."""
    x = rng.normal(2.0, 3.0, size=shape).astype("float32")
    layer = BatchNormalization(epsilon=1e-3, momentum=0.0, axis=axis)
    y = layer(x, training=True)
    features = tuple(range(1, len(shape))) if axis is None else (axis,)
    axes = tuple(a for a in range(len(shape)) if a not in features)
    mean, std = seed_batch_statistics(x, 1e-3, axes)
    np.testing.assert_allclose(
        to_numpy(y), seed_featurewise(x, 1.0, 0.0, mean, std, 1e-3), atol=2e-5
    )
    running_mean, running_std = layer.get_weights()[2:]
    assert running_mean.shape == layer.gamma.shape == tuple(shape[a] for a in features)
    np.testing.assert_allclose(
        running_mean, mean.reshape(running_mean.shape), atol=1e-5
    )
    np.testing.assert_allclose(running_std, std.reshape(running_std.shape), atol=1e-5)
