"""Global statistics across devices, and ghost batches."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import BACKEND, dtype_scope, numeric_gradient, to_numpy
from reference import seed_batch_statistics, seed_featurewise, seed_running_update

from keras_bn import BatchNormalization

HERE = os.path.dirname(os.path.abspath(__file__))


def distributed_run(backend, how):
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "distributed_runs.py"), backend, how],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stderr[-3000:]
    return json.loads(lines[0][len("RESULT ") :])


def max_difference(a, b):
    return max(np.max(np.abs(np.asarray(u) - np.asarray(v))) for u, v in zip(a, b))


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution runs on JAX")
@pytest.mark.parametrize(
    "layout", ["data_parallel", "model_parallel", "data_parallel_renorm"]
)
def test_jax_distribution_gives_global_statistics(layout):
    result = distributed_run("jax", layout)
    assert max_difference(result["bn_single"], result["bn_distributed"]) < 1e-5
    assert max_difference(result["single"], result["distributed"]) < 1e-5


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute")
@pytest.mark.parametrize("suffix", ["", "_renorm"])
def test_tf_mirrored_strategy_synchronized_equals_single_device(suffix):
    synced = distributed_run("tensorflow", "synchronized" + suffix)
    assert max_difference(synced["bn_single"], synced["bn_distributed"]) < 1e-5
    assert max_difference(synced["single"], synced["distributed"]) < 1e-5
    unsynced = distributed_run("tensorflow", "unsynchronized" + suffix)
    # Per-replica statistics: one replica's shifted share makes them differ.
    assert max_difference(unsynced["bn_single"], unsynced["bn_distributed"]) > 1e-2


# A large epsilon too: at 1e-6, dropping it moves the std by less than the
# tolerance.
@pytest.mark.parametrize("epsilon", [1e-6, 0.5])
def test_synchronized_on_each_backend(epsilon):
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="synchronized"):
            BatchNormalization(synchronized=True)
        return
    # Outside a distribution, synchronized statistics are the batch's own.
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    layer = BatchNormalization(synchronized=True, epsilon=epsilon, momentum=0.0)
    mean, std = seed_batch_statistics(x, epsilon)
    np.testing.assert_allclose(
        to_numpy(layer(x, training=True)),
        seed_featurewise(x, 1.0, 0.0, mean, std, epsilon),
        rtol=1e-5,
        atol=1e-5,
    )
    # momentum 0: the running estimates are the batch statistics.
    running_mean, running_std = layer.get_weights()[2:]
    np.testing.assert_allclose(running_mean, mean.ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(running_std, std.ravel(), rtol=1e-5, atol=1e-6)


# -- ghost batches ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("axis", [None, -1])
def test_virtual_batches(rng, mode, axis):
    x = rng.normal(size=(12, 4, 3)).astype("float32")
    x[4:8] += 3.0
    layer = BatchNormalization(mode=mode, axis=axis, momentum=0.8, virtual_batch_size=4)
    y = to_numpy(layer(x, training=True))
    reduction_axes = (0,) if axis is None else (0, 1)
    ghosts = [x[i : i + 4] for i in range(0, 12, 4)]
    statistics = [seed_batch_statistics(g, 1e-6, reduction_axes) for g in ghosts]
    if mode == 0:
        expected = np.concatenate(
            [
                seed_featurewise(g, 1.0, 0.0, m, s, 1e-6)
                for g, (m, s) in zip(ghosts, statistics)
            ]
        )
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=2e-5)
    shape = layer.get_weights()[2].shape
    mean = np.mean([m for m, _ in statistics], axis=0).reshape(shape)
    std = np.mean([s for _, s in statistics], axis=0).reshape(shape)
    np.testing.assert_allclose(
        layer.get_weights()[2], seed_running_update(0.0, mean, 0.8), atol=1e-5
    )
    np.testing.assert_allclose(
        layer.get_weights()[3], seed_running_update(1.0, std, 0.8), atol=1e-5
    )


def test_virtual_batch_gradients_train_in_a_model(rng):
    x = rng.normal(size=(32, 3)).astype("float32")
    model = keras.Sequential([BatchNormalization((3,), virtual_batch_size=8)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    history = model.fit(x, 2.0 * x, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_virtual_batch_gradients_with_the_batch_size_unknown(rng):
    """Ghost batches in a TensorFlow graph whose batch size is known only at
    run time (the gradients sum over a leading axis of unknown length),
    against finite differences of the NumPy reference, ghost by ghost."""
    if BACKEND != "tensorflow":
        pytest.skip("JAX and PyTorch know the batch size when they trace")
    import tensorflow as tf

    x = rng.normal(1.0, 2.0, size=(8, 3))
    x[4:] += 3.0
    upstream = rng.normal(size=(8, 3))
    gamma = rng.uniform(0.5, 1.5, 3)
    with dtype_scope("float64"):
        layer = BatchNormalization((3,), 1e-3, virtual_batch_size=4)
        layer.build((None, 3))
        layer.gamma.assign(gamma)

        @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float64)])
        def gradients(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True) * upstream)
            return tape.gradient(loss, [x, layer.gamma, layer.beta])

        dx, dgamma, dbeta = (g.numpy() for g in gradients(tf.constant(x)))

    def loss(x, gamma):
        y = []
        for ghost in (x[:4], x[4:]):
            mean, std = seed_batch_statistics(ghost, 1e-3, (0,))
            y.append(seed_featurewise(ghost, gamma, 0.0, mean, std, 1e-3))
        return np.sum(np.concatenate(y) * upstream)

    np.testing.assert_allclose(
        dx, numeric_gradient(lambda v: loss(v, gamma), x), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(
        dgamma, numeric_gradient(lambda v: loss(x, v), gamma), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(dbeta, upstream.sum(axis=0), rtol=1e-6)


def test_virtual_batch_size_must_divide_the_batch(rng):
    layer = BatchNormalization(virtual_batch_size=5)
    with pytest.raises(ValueError, match="multiple of 5"):
        layer(rng.normal(size=(12, 3)).astype("float32"), training=True)


def test_virtual_batch_size_with_synchronized_is_refused():
    if BACKEND == "torch":
        pytest.skip("synchronized is refused on torch already")
    with pytest.raises(ValueError, match="virtual_batch_size"):
        BatchNormalization(virtual_batch_size=4, synchronized=True)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "torch", reason="Keras distributes on JAX and TF")
def test_distributed_demo_shows_global_statistics():
    script = os.path.join(os.path.dirname(HERE), "scripts", "distributed_demo.py")
    result = subprocess.run(
        [sys.executable, script, "--devices", "2", "--steps", "20"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    mean_gap, std_gap = (float(part.split()[-1]) for part in last.split(","))
    assert mean_gap < 1e-5 and std_gap < 1e-5, last
