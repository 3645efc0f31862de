"""Shared fixtures. Run the suite once per backend with KERAS_BACKEND."""

import contextlib
import os
import sys

# Keras imports torch before TensorFlow when both are installed, to avoid a
# crash in their shared libraries; so do we.
try:
    import torch  # noqa: F401
except ImportError:
    pass

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

BACKEND = keras.backend.backend()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@contextlib.contextmanager
def dtype_scope(dtype):
    """float64 on JAX needs x64 switched on; elsewhere nothing to do."""
    if BACKEND == "jax" and dtype == "float64":
        import jax

        # jax.enable_x64 is jax >= 0.7's name; the declared floor (0.6) has
        # it under jax.experimental.
        enable_x64 = getattr(jax, "enable_x64", None)
        if enable_x64 is None:
            from jax.experimental import enable_x64
        with enable_x64(True):
            yield
    else:
        yield


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def assert_exact(actual, expected, bound=1e-6):
    """At most ``bound`` apart, relative to the outputs' size where it passes
    1: the converters' bound (Keras' own layer computes float64 in float32)."""
    actual, expected = to_numpy(actual), to_numpy(expected)
    scale = max(1.0, float(np.max(np.abs(expected))))
    assert np.max(np.abs(actual - expected)) <= bound * scale


@pytest.fixture(autouse=True)
def _clear_session():
    # Without the forced garbage collection (half a second a test, most of
    # the suite's time); Python's own collector still runs.
    keras.backend.clear_session(free_memory=False)
    yield


def loss_and_gradients(layer, x, upstream, **call_kwargs):
    """``sum(layer(x) * upstream)`` and its gradients with respect to ``x``
    and each of the layer's trainable weights, on the current backend."""
    trainable = layer.trainable_variables
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, **call_kwargs) * upstream)
        grads = tape.gradient(loss, [x, *trainable])
        return float(loss), [np.asarray(g) for g in grads]
    if BACKEND == "torch":
        import torch

        x = torch.tensor(np.asarray(x), requires_grad=True)
        for v in trainable:
            v.value.grad = None
        loss = torch.sum(layer(x, **call_kwargs) * torch.as_tensor(upstream))
        loss.backward()
        grads = [x.grad] + [v.value.grad for v in trainable]
        return float(loss), [g.detach().numpy() for g in grads]
    import jax

    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss_fn(x, trainable_values):
        y, _ = layer.stateless_call(trainable_values, non_trainable, x, **call_kwargs)
        return jax.numpy.sum(y * upstream)

    loss, grads = jax.value_and_grad(loss_fn, argnums=(0, 1))(
        jax.numpy.asarray(x), [v.value for v in trainable]
    )
    return float(loss), [np.asarray(grads[0])] + [np.asarray(g) for g in grads[1]]


def numeric_gradient(f, value, step=1e-6):
    """Central finite differences of the scalar function ``f`` at ``value``."""
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        bump = np.zeros_like(value)
        bump[index] = step
        grad[index] = (f(value + bump) - f(value - bump)) / (2 * step)
    return grad
