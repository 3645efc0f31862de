"""Exported models against the NumPy reference and ``predict``, in both modes.

Inference must not go through ``keras.ops.custom_gradient``, which jax2tf
cannot trace for a variable batch and which breaks PyTorch's ONNX and
``torch.export`` tracing. Each format is exported with a variable batch and
run on a batch of another size than the one the model was traced with:

- SavedModel (``model.export(format="tf_saved_model")``): TensorFlow and JAX;
- ONNX (``model.export(format="onnx")``, run with onnxruntime): every backend
  (Keras converts with tf2onnx on TensorFlow, jax2onnx on JAX, PyTorch's
  exporter on PyTorch);
- ``torch.export.export`` with a dynamic batch dimension: PyTorch.

A format that does not apply to the backend is skipped, naming why.
"""

import importlib.util

import keras
import numpy as np
import pytest
from conftest import BACKEND, to_numpy
from reference import seed_featurewise, seed_samplewise

from keras_bn import BatchNormalization

# Subprocess runs and exports: minutes, not seconds (pytest -m 'not slow').
pytestmark = pytest.mark.slow

SAMPLE_SHAPE = (3, 4)
EPSILON = 1e-3
TRACED_BATCH, RUN_BATCH = 2, 7


def keras1_samplewise(x, gamma, beta, epsilon):
    """Keras 1.x's mode 1: ``(x - m) / (sqrt(var + eps) + eps)``."""
    x = np.asarray(x, dtype="float64")
    m = x.mean(axis=-1, keepdims=True)
    std = np.sqrt(x.var(axis=-1, keepdims=True) + epsilon)
    return gamma * (x - m) / (std + epsilon) + beta


# mode, samplewise_epsilon_in_root
VARIANTS = [(0, False), (1, False), (1, True)]


def model_and_reference(rng, mode, epsilon_in_root):
    """A model holding one keras_bn layer with non-trivial weights, called
    once on a batch of TRACED_BATCH; and the NumPy reference of its
    inference output."""
    gamma = rng.uniform(0.5, 1.5, SAMPLE_SHAPE)
    beta = rng.normal(size=SAMPLE_SHAPE)
    running_mean = rng.normal(size=SAMPLE_SHAPE)
    running_std = rng.uniform(0.5, 2.0, SAMPLE_SHAPE)
    inputs = keras.Input(SAMPLE_SHAPE, name="x")
    layer = BatchNormalization(
        epsilon=EPSILON,
        mode=mode,
        weights=[gamma, beta, running_mean, running_std],
        samplewise_epsilon_in_root=epsilon_in_root,
    )
    model = keras.Model(inputs, layer(inputs))
    model(sample(rng, TRACED_BATCH))

    def reference(x):
        if mode == 0:
            return seed_featurewise(x, gamma, beta, running_mean, running_std, EPSILON)
        form = keras1_samplewise if epsilon_in_root else seed_samplewise
        return form(x, gamma, beta, EPSILON)

    return model, reference


def sample(rng, batch):
    return rng.normal(1.0, 2.0, size=(batch, *SAMPLE_SHAPE)).astype("float32")


def assert_matches(actual, x, model, reference):
    actual = np.asarray(actual)
    assert actual.shape == x.shape
    np.testing.assert_allclose(actual, reference(x), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(
        actual, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


def require(*modules):
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module} (the dev extra installs it)")


@pytest.mark.parametrize("mode, epsilon_in_root", VARIANTS)
def test_tf_saved_model(rng, tmp_path, mode, epsilon_in_root):
    if BACKEND not in ("tensorflow", "jax"):
        pytest.skip(f"Keras exports SavedModels from TensorFlow and JAX, not {BACKEND}")
    require("tensorflow")
    import tensorflow as tf

    model, reference = model_and_reference(rng, mode, epsilon_in_root)
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    x = sample(rng, RUN_BATCH)
    # Kept in a name: the loaded functions need their object alive.
    loaded = tf.saved_model.load(path)
    assert_matches(loaded.serve(x).numpy(), x, model, reference)
    if BACKEND == "tensorflow":
        # TFSMLayer runs on the TensorFlow backend only.
        reloaded = keras.layers.TFSMLayer(path, call_endpoint="serve")
        assert_matches(to_numpy(reloaded(x)), x, model, reference)


@pytest.mark.parametrize("mode, epsilon_in_root", VARIANTS)
def test_onnx(rng, tmp_path, mode, epsilon_in_root):
    # Keras converts with tf2onnx on TensorFlow, jax2onnx on JAX and
    # PyTorch's exporter (which needs onnxscript) on PyTorch.
    require(
        "onnx",
        "onnxruntime",
        {"tensorflow": "tf2onnx", "jax": "jax2onnx", "torch": "onnxscript"}[BACKEND],
    )
    import onnxruntime

    model, reference = model_and_reference(rng, mode, epsilon_in_root)
    path = str(tmp_path / "model.onnx")
    model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (input_spec,) = session.get_inputs()
    x = sample(rng, RUN_BATCH)
    (y,) = session.run(None, {input_spec.name: x})
    assert_matches(y, x, model, reference)


@pytest.mark.parametrize("mode, epsilon_in_root", VARIANTS)
def test_torch_export(rng, mode, epsilon_in_root):
    if BACKEND != "torch":
        pytest.skip(f"torch.export exports PyTorch modules, not {BACKEND} models")
    import torch

    model, reference = model_and_reference(rng, mode, epsilon_in_root)

    class Inference(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x, training=False)

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        Inference(model).eval(),
        (torch.as_tensor(sample(rng, TRACED_BATCH)),),
        dynamic_shapes={"x": {0: batch}},
    )
    x = sample(rng, RUN_BATCH)
    with torch.no_grad():
        y = program.module()(torch.as_tensor(x))
    assert_matches(y.numpy(), x, model, reference)
