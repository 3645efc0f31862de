"""keras_bn: the 2015 Keras BatchNormalization layer on Keras 3."""

import os

__version__ = "0.1.0"

try:
    from keras_bn import convert, legacy
    from keras_bn.batch_normalization import BatchNormalization
    from keras_bn.folding import fold_batchnorm
    from keras_bn.statistics import recompute_statistics
except ModuleNotFoundError as error:
    # Keras imports its backend when it is imported: TensorFlow, unless
    # KERAS_BACKEND names another. Without it the package still imports, so
    # that `keras-bn --help` and `--version` work; every use says what to do.
    if error.name not in ("tensorflow", "jax", "torch"):
        raise
    NO_BACKEND = (
        f"Keras cannot import its backend ({error.name}, "
        + (
            "named by KERAS_BACKEND"
            if os.environ.get("KERAS_BACKEND")
            else "the default when KERAS_BACKEND is not set"
        )
        + '): install it, e.g. pip install "keras-bn[jax]" (or [tensorflow], '
        "[torch]), and set KERAS_BACKEND=jax (or tensorflow, torch) to the one "
        "installed."
    )

    def __getattr__(name):
        if name in __all__:
            raise ImportError(f"keras_bn.{name}: {NO_BACKEND}")
        raise AttributeError(f"module 'keras_bn' has no attribute {name!r}")

else:
    NO_BACKEND = None

__all__ = [
    "BatchNormalization",
    "convert",
    "fold_batchnorm",
    "legacy",
    "recompute_statistics",
]
