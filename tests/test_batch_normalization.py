"""keras_bn.BatchNormalization against the NumPy restatement of the seed."""

import os
import subprocess
import sys
import textwrap

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
    keras1_mode2,
    seed_batch_statistics,
    seed_featurewise,
    seed_running_update,
    seed_samplewise,
)

from keras_bn import BatchNormalization

TOLERANCE = {
    "float32": dict(rtol=1e-5, atol=2e-5),
    "float64": dict(rtol=1e-10, atol=1e-10),
}
SHAPES = [(16, 5), (8, 4, 3), (6, 3, 4, 2)]


def random_weights(rng, shape):
    return [
        rng.uniform(0.5, 1.5, shape),
        rng.normal(size=shape),
        rng.normal(size=shape),
        rng.uniform(0.5, 2.0, shape),
    ]


def assert_close(actual, expected, dtype="float32"):
    np.testing.assert_allclose(to_numpy(actual), expected, **TOLERANCE[dtype])


# -- construction and weights ------------------------------------------------


def test_positional_constructor_as_in_the_seed(rng):
    weights = random_weights(rng, (6,))
    layer = BatchNormalization((6,), 1e-4, 1, 0.5, weights)
    assert (layer.epsilon, layer.mode, layer.momentum) == (1e-4, 1, 0.5)
    assert layer.built
    for got, want in zip(layer.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_weights_names_order_and_initial_values():
    layer = BatchNormalization((3, 2))
    assert [w.name for w in layer.trainable_weights] == ["gamma", "beta"]
    assert [w.name for w in layer.non_trainable_weights] == [
        "running_mean",
        "running_std",
    ]
    gamma, beta, running_mean, running_std = layer.get_weights()
    for array in (gamma, beta, running_mean, running_std):
        assert array.shape == (3, 2)
    np.testing.assert_array_equal(gamma, np.ones((3, 2)))  # the upstream fix
    np.testing.assert_array_equal(beta, np.zeros((3, 2)))
    np.testing.assert_array_equal(running_mean, np.zeros((3, 2)))
    np.testing.assert_array_equal(running_std, np.ones((3, 2)))


def test_lazy_build_without_input_shape(rng):
    layer = BatchNormalization()
    assert not layer.built
    layer(rng.normal(size=(4, 7)).astype("float32"))
    assert layer.built and layer.get_weights()[0].shape == (7,)


def test_weights_argument_applies_at_lazy_build(rng):
    weights = random_weights(rng, (7,))
    layer = BatchNormalization(weights=weights)
    x = rng.normal(size=(4, 7)).astype("float32")
    y = layer(x)
    assert_close(y, seed_featurewise(x, *weights, 1e-6))


def test_seed_uniform_start_is_available():
    layer = BatchNormalization(
        (500,), gamma_initializer=keras.initializers.RandomUniform(-0.05, 0.05)
    )
    gamma = layer.get_weights()[0]
    assert np.all(np.abs(gamma) <= 0.05) and gamma.std() > 0.01


def test_set_weights_round_trip(rng):
    layer = BatchNormalization((4, 3))
    weights = random_weights(rng, (4, 3))
    layer.set_weights(weights)
    for got, want in zip(layer.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    other = BatchNormalization((4, 3), weights=layer.get_weights())
    for got, want in zip(other.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-6)


# -- outputs and running estimates --------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("epsilon", [1e-6, 1e-3, 0.5])
def test_mode0_training_output_and_running_estimates(rng, shape, epsilon, dtype):
    with dtype_scope(dtype):
        x = rng.normal(2.0, 3.0, size=shape).astype(dtype)
        weights = random_weights(rng, shape[1:])
        layer = BatchNormalization(shape[1:], epsilon, 0, 0.7, weights, dtype=dtype)
        y = layer(x, training=True)
        mean, std = seed_batch_statistics(x, epsilon)
        assert_close(
            y, seed_featurewise(x, weights[0], weights[1], mean, std, epsilon), dtype
        )
        _, _, running_mean, running_std = layer.get_weights()
        np.testing.assert_allclose(
            running_mean,
            seed_running_update(weights[2], mean[0], 0.7),
            **TOLERANCE[dtype],
        )
        np.testing.assert_allclose(
            running_std,
            seed_running_update(weights[3], std[0], 0.7),
            **TOLERANCE[dtype],
        )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
def test_mode0_inference_uses_running_estimates(rng, shape, dtype):
    with dtype_scope(dtype):
        x = rng.normal(size=shape).astype(dtype)
        weights = random_weights(rng, shape[1:])
        layer = BatchNormalization(shape[1:], 1e-3, weights=weights, dtype=dtype)
        for training in (None, False):
            assert_close(
                layer(x, training=training),
                seed_featurewise(x, *weights, 1e-3),
                dtype,
            )
        for got, want in zip(layer.get_weights(), weights):
            np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_mode1_samplewise_in_both_phases(rng, shape, training):
    x = rng.normal(1.0, 2.0, size=shape).astype("float32")
    weights = random_weights(rng, shape[1:])
    layer = BatchNormalization(shape[1:], 1e-6, 1, 0.9, weights)
    y = layer(x, training=training)
    assert_close(y, seed_samplewise(x, weights[0], weights[1], 1e-6))


def test_mode1_still_updates_running_estimates(rng):
    # The seed's init_updates does not look at mode.
    x = rng.normal(size=(10, 4)).astype("float32")
    layer = BatchNormalization((4,), mode=1)
    layer(x, training=True)
    mean, std = seed_batch_statistics(x, 1e-6)
    np.testing.assert_allclose(layer.get_weights()[2], 0.1 * mean[0], atol=1e-6)
    np.testing.assert_allclose(layer.get_weights()[3], 0.9 + 0.1 * std[0], atol=1e-6)


@pytest.mark.parametrize("shape, axis", [((8, 4), None), ((4, 3, 3, 2), -1)])
@pytest.mark.parametrize("training", [True, False])
def test_mode2_batch_statistics_in_both_phases(rng, shape, axis, training):
    """Keras 1.x's mode 2 (tests/reference.py): the batch's statistics at
    inference too, epsilon inside the root only; the running estimates never
    move (the releases' own files kept their initial values)."""
    x = rng.normal(3.0, 2.0, size=shape).astype("float32")
    layer = BatchNormalization(epsilon=1e-3, mode=2, axis=axis)
    layer.build(shape)
    param_shape = layer.gamma.shape
    weights = random_weights(rng, param_shape)
    layer.set_weights(weights)
    y = layer(x, training=training)
    axes = (0,) if axis is None else tuple(range(len(shape) - 1))
    expected = keras1_mode2(x, weights[0], weights[1], 1e-3, axes)
    assert_close(y, expected)
    for got, want in zip(layer.get_weights()[2:], weights[2:]):
        np.testing.assert_array_equal(got, want.astype("float32"))
    # Not the seed's formula: epsilon is not added to the std again.
    mean, std = seed_batch_statistics(x, 1e-3, axes)
    seed = seed_featurewise(x, weights[0], weights[1], mean, std, 1e-3)
    assert np.max(np.abs(to_numpy(y) - seed)) > 1e-4


def test_mode2_is_refused_where_it_has_no_equivalent(rng):
    from keras_bn import convert, fold_batchnorm

    layer = BatchNormalization((4,), 1e-3, 2)
    with pytest.raises(ValueError, match="mode=2"):
        convert.to_keras(layer)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), layer])
    _, report = fold_batchnorm(model, return_report=True)
    assert not report.folded
    assert "mode 2" in report.unfolded[layer.name]
    config = layer.get_config()
    assert BatchNormalization.from_config(config).mode == 2


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 1.0])
def test_running_estimates_after_several_steps(rng, momentum):
    shape = (12, 3, 2)
    layer = BatchNormalization(shape[1:], 1e-3, 0, momentum)
    running_mean = np.zeros(shape[1:])
    running_std = np.ones(shape[1:])
    for _ in range(4):
        x = rng.normal(3.0, 2.0, size=shape).astype("float32")
        layer(x, training=True)
        mean, std = seed_batch_statistics(x, 1e-3)
        running_mean = seed_running_update(running_mean, mean[0], momentum)
        running_std = seed_running_update(running_std, std[0], momentum)
    np.testing.assert_allclose(
        layer.get_weights()[2], running_mean, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        layer.get_weights()[3], running_std, rtol=1e-5, atol=1e-5
    )


def test_frozen_layer_runs_in_inference_and_keeps_its_estimates(rng):
    x = rng.normal(size=(8, 5)).astype("float32")
    weights = random_weights(rng, (5,))
    layer = BatchNormalization((5,), weights=weights)
    layer.trainable = False
    y = layer(x, training=True)
    assert_close(y, seed_featurewise(x, *weights, 1e-6))
    for got, want in zip(layer.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-6)


# -- gradients -----------------------------------------------------------------


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 3)])
def test_gradients_match_finite_differences(rng, mode, shape):
    with dtype_scope("float64"):
        x = rng.normal(1.0, 2.0, size=shape)
        gamma, beta = rng.uniform(0.5, 1.5, shape[1:]), rng.normal(size=shape[1:])
        upstream = rng.normal(size=shape)
        layer = BatchNormalization(
            shape[1:],
            1e-3,
            mode,
            weights=[gamma, beta, np.zeros(shape[1:]), np.ones(shape[1:])],
            dtype="float64",
        )
        _, (dx, dgamma, dbeta) = loss_and_gradients(layer, x, upstream, training=True)

    def loss(x, gamma, beta):
        if mode == 0:
            mean, std = seed_batch_statistics(x, 1e-3)
            y = seed_featurewise(x, gamma, beta, mean, std, 1e-3)
        else:
            y = seed_samplewise(x, gamma, beta, 1e-3)
        return np.sum(y * upstream)

    np.testing.assert_allclose(
        dx, numeric_gradient(lambda v: loss(v, gamma, beta), x), atol=1e-7
    )
    np.testing.assert_allclose(
        dgamma, numeric_gradient(lambda v: loss(x, v, beta), gamma), atol=1e-7
    )
    np.testing.assert_allclose(
        dbeta, numeric_gradient(lambda v: loss(x, gamma, v), beta), atol=1e-7
    )


# -- models, fit and compilation ----------------------------------------------


def sequential_model(shape):
    model = keras.Sequential()
    model.add(BatchNormalization(shape))
    return model


def functional_model(shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, BatchNormalization()(inputs))


class SubclassedModel(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batch_norm = BatchNormalization()

    def call(self, inputs, training=None):
        return self.batch_norm(inputs, training=training)


@pytest.mark.parametrize("jit_compile", [True, False])
@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_train_on_batch_updates_estimates_and_predict_uses_them(rng, kind, jit_compile):
    shape = (4, 3)
    model = {
        "sequential": lambda: sequential_model(shape),
        "functional": lambda: functional_model(shape),
        "subclassed": SubclassedModel,
    }[kind]()
    # Learning rate 0: the weights stay put, so the running estimates after
    # two steps follow from the seed's update alone.
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    running_mean, running_std = np.zeros(shape), np.ones(shape)
    for _ in range(2):
        x = rng.normal(1.0, 2.0, size=(10, *shape)).astype("float32")
        model.train_on_batch(x, np.zeros_like(x))
        mean, std = seed_batch_statistics(x, 1e-6)
        running_mean = seed_running_update(running_mean, mean[0], 0.9)
        running_std = seed_running_update(running_std, std[0], 0.9)
    layer = [
        lay for lay in model._flatten_layers() if isinstance(lay, BatchNormalization)
    ][0]
    np.testing.assert_allclose(
        layer.get_weights()[2], running_mean, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        layer.get_weights()[3], running_std, rtol=1e-5, atol=1e-5
    )
    x = rng.normal(size=(5, *shape)).astype("float32")
    expected = seed_featurewise(x, 1.0, 0.0, running_mean, running_std, 1e-6)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4
    )
    loss = model.evaluate(x, expected, verbose=0)
    assert loss < 1e-8


def test_fit_learns_gamma_and_beta(rng):
    x = rng.normal(size=(64, 3)).astype("float32")
    mean, std = seed_batch_statistics(x, 1e-6)
    target = seed_featurewise(x, 2.0, -1.0, mean, std, 1e-6)
    model = sequential_model((3,))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    history = model.fit(x, target, batch_size=64, epochs=60, verbose=0)
    assert history.history["loss"][-1] < 1e-3 * history.history["loss"][0]
    gamma, beta = model.layers[0].get_weights()[:2]
    np.testing.assert_allclose(gamma, 2.0, atol=0.05)
    np.testing.assert_allclose(beta, -1.0, atol=0.05)


# -- serialization --------------------------------------------------------------


def test_config_round_trip():
    layer = BatchNormalization((3, 4), 1e-3, 1, 0.8, name="bn")
    config = layer.get_config()
    clone = BatchNormalization.from_config(config)
    assert clone.get_config() == config
    assert clone.built


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [".keras", ".weights.h5"])
def test_saved_model_loads_in_fresh_process(rng, tmp_path, fmt):
    shape = (5,)
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Dense(5), BatchNormalization(mode=0)]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = rng.normal(size=(32, 5)).astype("float32")
    model.fit(x, x, batch_size=8, epochs=2, verbose=0)
    path = str(tmp_path / f"model{fmt}")
    if fmt == ".keras":
        model.save(path)
    else:
        model.save_weights(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    for i, array in enumerate(model.layers[1].get_weights()):
        np.save(tmp_path / f"w{i}.npy", array)
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, keras_bn
        d = {str(tmp_path)!r}
        if {fmt!r} == ".keras":
            model = keras.saving.load_model({path!r})
        else:
            model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(5),
                                      keras_bn.BatchNormalization(mode=0)])
            model.load_weights({path!r})
        layer = model.layers[1]
        assert type(layer) is keras_bn.BatchNormalization, type(layer)
        for i, array in enumerate(layer.get_weights()):
            np.testing.assert_array_equal(array, np.load(f"{{d}}/w{{i}}.npy"))
        assert not np.allclose(layer.get_weights()[3], 1.0)
        np.testing.assert_allclose(
            model.predict(np.load(d + "/x.npy"), verbose=0), np.load(d + "/y.npy"),
            rtol=1e-6, atol=1e-6)
        print("LOADED OK")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
        timeout=300,
    )
    assert "LOADED OK" in result.stdout, result.stderr[-3000:]


# -- bad input ------------------------------------------------------------------


# The rule (keras_bn/_validation.py): a value of the wrong type raises
# TypeError, a value of the right type that the argument does not allow
# raises ValueError; the message names the argument.
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(mode=3), ValueError, "mode: expected 0 .*, 1 .* or 2 .*, got 3"),
        (dict(mode=2, virtual_batch_size=2), ValueError, "virtual_batch_size: not"),
        (dict(mode=2, skip_non_finite=True), ValueError, "skip_non_finite: not"),
        (dict(mode=True), TypeError, "mode: expected .*, got True"),
        (dict(epsilon=0), ValueError, "epsilon: expected a positive"),
        (dict(epsilon=-1e-3), ValueError, "epsilon"),
        (dict(epsilon=float("nan")), ValueError, "epsilon"),
        (dict(epsilon="small"), TypeError, "epsilon: .*got 'small'"),
        (dict(momentum=1.5), ValueError, r"momentum: expected a number in \[0, 1\]"),
        (dict(momentum=-0.1), ValueError, "momentum"),
        (dict(momentum="high"), TypeError, "momentum"),
        (dict(input_shape=(0, 3)), ValueError, "input_shape"),
        (dict(input_shape=5), TypeError, "input_shape"),
        (dict(input_shape=(2.5,)), TypeError, "input_shape"),
        (dict(input_shape=()), ValueError, "input_shape"),
        (dict(synchronized=1), TypeError, "synchronized: expected True or False"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        BatchNormalization(**kwargs)


def bad_weight_lists(rng):
    good = random_weights(rng, (3,))
    nan_beta = [w.copy() for w in good]
    nan_beta[1][0] = np.nan
    inf_mean = [w.copy() for w in good]
    inf_mean[2][1] = np.inf
    negative_std = [w.copy() for w in good]
    negative_std[3][2] = -0.5
    wrong_shape = [w.copy() for w in good]
    wrong_shape[2] = np.zeros((4,))
    return [
        (good[:3], ValueError, "4 arrays"),
        (good + [good[0]], ValueError, "4 arrays"),
        (nan_beta, ValueError, "beta must be finite"),
        (inf_mean, ValueError, "running_mean must be finite"),
        (negative_std, ValueError, "running_std"),
        (wrong_shape, ValueError, r"running_mean must have shape \(3,\)"),
        ("not a list", TypeError, "weights"),
        ([good[0], good[1], good[2], "x"], TypeError, "running_std"),
    ]


BAD_WEIGHT_LISTS = bad_weight_lists(np.random.default_rng(0))


@pytest.mark.parametrize(
    "weights, error, message",
    BAD_WEIGHT_LISTS,
    ids=[message for _, _, message in BAD_WEIGHT_LISTS],
)
def test_bad_weight_lists_leave_the_layer_unchanged(rng, weights, error, message):
    layer = BatchNormalization((3,), weights=random_weights(rng, (3,)))
    before = layer.get_weights()
    with pytest.raises(error, match=message):
        layer.set_weights(weights)
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(error, match=message):
        BatchNormalization((3,), weights=weights)


def test_input_that_does_not_fit_the_built_layer(rng):
    layer = BatchNormalization((3,))
    with pytest.raises(
        ValueError, match="expected axis 1 of input shape to have value 3"
    ):
        layer(rng.normal(size=(4, 5)).astype("float32"))
    with pytest.raises(ValueError, match="expected ndim=2, found ndim=3"):
        layer(rng.normal(size=(4, 3, 1)).astype("float32"))


# -- Keras' own layer contract ----------------------------------------------------


# run_layer_test is private Keras API, checked on Keras 3.10 to 3.15 (the dev
# extra pins that range). Elsewhere a user's run skips it; CI never does, so a
# contract test that cannot run there fails instead of passing unseen.
@pytest.mark.skipif(
    not (3, 10) <= tuple(int(p) for p in keras.__version__.split(".")[:2]) < (3, 16)
    and not os.environ.get("CI"),
    reason="run_layer_test is private Keras API, checked on Keras 3.10 to 3.15",
)
@pytest.mark.parametrize("mode", [0, 1])
def test_keras_layer_contract(mode):
    from keras.src.testing import TestCase

    case = TestCase()
    case.run_layer_test(
        BatchNormalization,
        init_kwargs={"mode": mode, "momentum": 0.8},
        input_shape=(4, 3, 2),
        expected_output_shape=(4, 3, 2),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
        expected_num_seed_generators=0,
        expected_num_losses=0,
        supports_masking=True,
    )
    case.run_layer_test(
        BatchNormalization,
        init_kwargs={"input_shape": (3, 2), "mode": mode},
        input_shape=(4, 3, 2),
        expected_output_shape=(4, 3, 2),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
        supports_masking=True,
    )


# -- values checked in the dtype they are stored in ------------------------------


def replaced(weights, index, value):
    weights = [w.copy() for w in weights]
    weights[index] = value
    return weights


@pytest.mark.parametrize(
    "index, value, message",
    [
        (3, np.full(3, 1e39), "running_std must be finite in float32.*1e\\+39"),
        (2, np.array([0.0, -4e38, 1.0]), "running_mean must be finite in float32"),
        (0, np.array([1.0, 2.0 + 1e-3j, 1.0]), "gamma must be a real array.*complex"),
        (1, np.zeros(3, dtype=complex), "beta must be a real array.*complex"),
    ],
)
def test_weights_are_checked_in_the_variables_dtype(rng, index, value, message):
    good = random_weights(rng, (3,))
    bad = replaced(good, index, value)
    error = TypeError if "complex" in message else ValueError
    layer = BatchNormalization((3,), weights=good)
    before = layer.get_weights()
    with pytest.raises(error, match=message):
        layer.set_weights(bad)
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(error, match=message):
        BatchNormalization((3,), weights=bad)
    # Unbuilt: checked against the layer's variable dtype at construction.
    with pytest.raises(error, match=message):
        BatchNormalization(weights=bad)


def test_float64_variables_take_values_beyond_float32(rng):
    with dtype_scope("float64"):
        weights = replaced(random_weights(rng, (3,)), 3, np.full(3, 1e39))
        layer = BatchNormalization((3,), weights=weights, dtype="float64")
        np.testing.assert_array_equal(layer.get_weights()[3], np.full(3, 1e39))
        layer.set_weights(replaced(weights, 2, np.full(3, -1e300)))
        np.testing.assert_array_equal(layer.get_weights()[2], np.full(3, -1e300))


def test_float16_variables_refuse_values_beyond_float16(rng):
    weights = replaced(random_weights(rng, (3,)), 3, np.full(3, 1e5))
    with pytest.raises(ValueError, match="running_std must be finite in float16"):
        BatchNormalization((3,), weights=weights, dtype="float16")
    # Under mixed precision the variables are float32: 1e5 fits.
    layer = BatchNormalization((3,), weights=weights, dtype="mixed_float16")
    np.testing.assert_array_equal(layer.get_weights()[3], np.full(3, 1e5))


@pytest.mark.parametrize("epsilon", [1e308, 1e39, 1e-50])
@pytest.mark.parametrize("dtype", ["float32", "mixed_float16"])
def test_epsilon_must_fit_the_statistics_dtype(epsilon, dtype):
    with pytest.raises(ValueError, match="epsilon: .* float32"):
        BatchNormalization((3,), epsilon, dtype=dtype)
    with pytest.raises(ValueError, match="epsilon: .* float32"):
        BatchNormalization(epsilon=epsilon, dtype=dtype)


def test_epsilon_beyond_float32_is_exact_in_float64(rng):
    epsilon = 1e300
    with dtype_scope("float64"):
        x = rng.normal(size=(8, 3)) * 1e140
        weights = random_weights(rng, (3,))
        layer = BatchNormalization((3,), epsilon, weights=weights, dtype="float64")
        y = layer(x, training=True)
        mean, std = seed_batch_statistics(x, epsilon)
        assert_close(
            y,
            seed_featurewise(x, weights[0], weights[1], mean, std, epsilon),
            "float64",
        )
        np.testing.assert_allclose(
            layer.get_weights()[3], seed_running_update(weights[3], std[0], 0.9)
        )


# -- accuracy on a large batch far from 0 ------------------------------------------


@pytest.mark.parametrize("first_sample", ["typical", "outlier"])
@pytest.mark.parametrize("mode", [0, 1])
def test_statistics_of_a_large_batch_with_a_large_mean(rng, mode, first_sample):
    """2^20 float32 rows, one feature of mean 1000 and std 1: float32 sums
    taken one row after another lose the spread to the mean's rounding."""
    rows = 2**20
    x = rng.normal(0.0, 1.0, size=(rows, 4))
    x[:, 1] = rng.normal(1000.0, 1.0, size=rows)
    x[:, 2] = rng.normal(-3.0, 0.01, size=rows)
    if first_sample == "outlier":
        x[0] += 50 * np.array([1.0, 1.0, 0.01, 1.0])
    x = x.astype("float32")
    exact = x.astype("float64")
    epsilon = 1e-6
    mean, std = seed_batch_statistics(exact, epsilon)
    spread = exact.std(axis=0)

    layer = BatchNormalization((4,), epsilon, mode, momentum=0.0)
    y = to_numpy(layer(x, training=True))
    running_mean, running_std = layer.get_weights()[2:]
    # Momentum 0: the running estimates are the batch statistics.
    np.testing.assert_array_less(np.abs(running_mean - mean[0]), 1e-3 * spread)
    np.testing.assert_array_less(np.abs(running_std - std[0]), 1e-3 * spread)
    if mode == 0:
        # The statistics it normalizes with: the output of unit gamma and
        # zero beta is (x - mean) / (std + epsilon), in units of the std.
        np.testing.assert_allclose(
            y,
            seed_featurewise(exact, 1.0, 0.0, mean, std, epsilon),
            rtol=2e-4,
            atol=2e-3,
        )
