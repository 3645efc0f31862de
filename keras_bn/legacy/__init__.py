"""Weights from Keras 0.x, 1.x and 2.x HDF5 files, BatchNormalization converted.

`read_weights` tells what a legacy file holds; `load_weights` puts it into a
Keras 3 model whose weighted layers match the file's in order
(docs/legacy.md). The steps, one module each:

- `keras_bn.legacy.reading`: a file's layout -> `LegacyWeights`, `LegacyLayer`;
- `keras_bn.legacy.releases`: what each Keras release meant by its
  BatchNormalization arrays (std or variance, epsilon, defaults);
- `keras_bn.legacy.kernels`: convolution kernels, from Keras 0.x/1.x's
  channels-first layout and Theano's true convolution;
- `keras_bn.legacy.layers`: one file layer's arrays checked and converted
  for one model layer;
- `keras_bn.legacy.assign`: matching the file's layers with the model's and
  assigning all or nothing.

Every failure raises `LegacyFileError`, a `ValueError`.

A BatchNormalization's fourth array is a standard deviation up to Keras
1.0.5 and a variance from 1.0.7 on (1.0.6 depends on the backend); the
loader decides from the file's ``keras_version`` and converts it exactly for
the target layer: a std for `keras_bn.BatchNormalization`, a variance for
`keras.layers.BatchNormalization`.
"""

import importlib

import keras_bn
from keras_bn.legacy.errors import LegacyFileError
from keras_bn.legacy.reading import FORMATS, LegacyLayer, LegacyWeights, read_weights

# Reading a file needs h5py and NumPy only (``keras-bn inspect`` starts in
# well under a second); loading into a model needs Keras, imported when
# these are first used.
_NEED_KERAS = {
    "load_model": "keras_bn.legacy.models",
    "load_weights": "keras_bn.legacy.assign",
}


def __getattr__(name):
    if name not in _NEED_KERAS:
        raise AttributeError(f"module 'keras_bn.legacy' has no attribute {name!r}")
    try:
        module = importlib.import_module(_NEED_KERAS[name])
    except ModuleNotFoundError as error:
        advice = keras_bn._backend_advice(error)
        if advice is None:
            raise
        raise ImportError(f"keras_bn.legacy.{name}: {advice}") from None
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})


__all__ = [
    "FORMATS",
    "LegacyFileError",
    "LegacyLayer",
    "LegacyWeights",
    "load_model",
    "load_weights",
    "read_weights",
]
