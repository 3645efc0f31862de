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

# -- sweeps over the old releases' files ------------------------------------------
#
# What an old file's loading does with its arrays is NumPy and the same on
# every backend; what the backend changes is how the rebuilt model runs. So
# the sweeps over every file of every release run whole on one backend only
# (in CI), and every backend, and the fast suite (pytest -m "not slow"), load
# a sample of releases that between them run every line of the legacy
# package the whole sweeps run (checked with coverage): the first 0.x
# release, a Keras 1.0 written with TensorFlow, the last 1.x with Theano
# (its flipped kernels) and Keras 2.2.4 with TensorFlow.
SWEEP_BACKEND = "jax"
SAMPLE_RELEASES = frozenset(
    {
        "keras-0.2.0-theano",
        "keras-1.0.7-tensorflow",
        "keras-1.2.2-theano",
        "keras-2.2.4-tensorflow",
    }
)


def release_param(release, *values, id):
    """A parameter of a sweep over the old releases' files, ``release``
    naming the directory (``keras-1.2.2-theano``): outside the sample, it
    runs on `SWEEP_BACKEND` only, and not in the fast suite."""
    marks = () if release in SAMPLE_RELEASES else (pytest.mark.sweep,)
    return pytest.param(*values, id=id, marks=marks)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # tryfirst: the sweep's tests are slow before -m selects.
    kept, deselected = [], []
    for item in items:
        if item.get_closest_marker("sweep"):
            item.add_marker(pytest.mark.slow)
            if BACKEND != SWEEP_BACKEND:
                deselected.append(item)
                continue
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


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
