"""keras_bn: the 2015 Keras BatchNormalization layer on Keras 3.

The public names load on first use (PEP 562), so that what needs no Keras
(``keras-bn --help``, ``--version``, ``inspect``, `keras_bn.legacy.reading`)
starts without importing Keras and its backend. Keras' registry still learns
keras_bn's classes as soon as Keras is there: at once if Keras is already
imported, else the moment it is (`_registration`), so that ``import
keras_bn`` before ``keras.saving.load_model`` works as it always has.
"""

import importlib
import importlib.util
import os

from keras_bn import _registration

__version__ = "0.1.0"

__all__ = [
    "BatchNormalization",
    "convert",
    "fold_batchnorm",
    "legacy",
    "recompute_statistics",
]

# Each public name and the module that defines it.
_HOMES = {
    "BatchNormalization": "keras_bn.batch_normalization",
    "convert": "keras_bn.convert",
    "fold_batchnorm": "keras_bn.folding",
    "legacy": "keras_bn.legacy",
    "recompute_statistics": "keras_bn.statistics",
}


_BACKENDS = ("tensorflow", "jax", "torch")


def _backend_advice(error):
    """The one-line advice for a `ModuleNotFoundError` of Keras' backend, or
    None when ``error`` is about another module: which backend to name
    where one is installed, else what to install."""
    if error.name not in _BACKENDS:
        return None
    named = (
        "named by KERAS_BACKEND"
        if os.environ.get("KERAS_BACKEND")
        else "the default when KERAS_BACKEND is not set"
    )
    installed = [
        name
        for name in _BACKENDS
        if name != error.name and importlib.util.find_spec(name) is not None
    ]
    if installed:
        todo = (
            f"set KERAS_BACKEND={installed[0]}"
            + "".join(f" (or {name})" for name in installed[1:])
            + ", installed here"
        )
    else:
        todo = (
            "install a backend (pip install jax, tensorflow or torch; from a "
            'clone, pip install ".[jax]") and set KERAS_BACKEND to it'
        )
    return f"Keras cannot import its backend ({error.name}, {named}): {todo}."


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'keras_bn' has no attribute {name!r}")
    try:
        module = importlib.import_module(_HOMES[name])
    except ModuleNotFoundError as error:
        advice = _backend_advice(error)
        if advice is None:
            raise
        # The advice says it all: Keras' own traceback is dozens of lines.
        raise ImportError(f"keras_bn.{name}: {advice}") from None
    value = module if _HOMES[name] == f"keras_bn.{name}" else getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *__all__})


_registration.register_when_keras_loads()
