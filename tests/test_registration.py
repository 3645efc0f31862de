"""``import keras_bn`` registers its classes with Keras whatever the order of
the imports, though it does not import Keras itself."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_bn
from keras_bn.legacy.activations import legacy_hard_sigmoid

# Loads the file in a fresh interpreter after the given imports, and prints
# what it predicts.
LOAD = """
import sys
{imports}
import numpy as np
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[2], np.asarray(model.predict(np.load(sys.argv[3]), verbose=0)))
"""

ORDERS = {
    "keras_bn_first": "import keras_bn\nimport keras",
    "keras_first": "import keras\nimport keras_bn",
    # Keras first imported through one of its submodules.
    "keras_submodule": "import keras_bn\nfrom keras import saving\nimport keras",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A .keras file with a keras_bn layer and the legacy hard sigmoid, and
    the input and output Keras computed before saving."""
    folder = tmp_path_factory.mktemp("saved")
    rng = np.random.default_rng(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras_bn.BatchNormalization(),
            keras.layers.Dense(2, activation=legacy_hard_sigmoid),
        ]
    )
    model.layers[0].set_weights(
        [rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3),
         rng.uniform(0.5, 2, 3)]
    )  # fmt: skip
    x = rng.normal(size=(5, 3)).astype("float32")
    np.save(folder / "x.npy", x)
    model.save(folder / "model.keras")
    return folder, np.asarray(model.predict(x, verbose=0))


@pytest.mark.slow
@pytest.mark.parametrize("order", ORDERS)
def test_a_saved_model_loads_after_import_keras_bn(saved, order):
    folder, expected = saved
    result = subprocess.run(
        [sys.executable, "-c", LOAD.format(imports=ORDERS[order]),
         str(folder / "model.keras"), str(folder / "y.npy"), str(folder / "x.npy")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(folder / "y.npy"), expected, rtol=1e-6)


@pytest.mark.slow
def test_without_import_keras_bn_the_layer_is_unknown(saved):
    """The check above can fail: without keras_bn, Keras cannot load it."""
    folder, _ = saved
    result = subprocess.run(
        [sys.executable, "-c", LOAD.format(imports="import keras"),
         str(folder / "model.keras"), str(folder / "y.npy"), str(folder / "x.npy")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "BatchNormalization" in result.stderr


def test_the_public_names_resolve():
    from keras_bn import batch_normalization, convert, folding, legacy, statistics

    assert keras_bn.BatchNormalization is batch_normalization.BatchNormalization
    assert keras_bn.convert is convert
    assert keras_bn.fold_batchnorm is folding.fold_batchnorm
    assert keras_bn.recompute_statistics is statistics.recompute_statistics
    assert keras_bn.legacy.load_model is legacy.models.load_model
    assert keras_bn.legacy.load_weights is legacy.assign.load_weights
    assert set(keras_bn.__all__) <= set(dir(keras_bn))
    with pytest.raises(AttributeError, match="no attribute 'BatchNorm'"):
        keras_bn.BatchNorm  # noqa: B018


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_a_missing_backend_gets_advice_and_other_modules_do_not(backend, monkeypatch):
    """Whichever of the three backends Keras cannot import, the advice names
    it and what to set; a missing module of another name is not Keras'
    backend, and gets none."""
    monkeypatch.setenv("KERAS_BACKEND", backend)
    advice = keras_bn._backend_advice(ModuleNotFoundError(name=backend))
    assert advice.startswith(f"Keras cannot import its backend ({backend}, named by")
    assert "KERAS_BACKEND" in advice
    assert keras_bn._backend_advice(ModuleNotFoundError(name="numpy")) is None
