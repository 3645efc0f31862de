"""keras_bn: the 2015 Keras BatchNormalization layer on Keras 3."""

from keras_bn import convert, legacy
from keras_bn.batch_normalization import BatchNormalization
from keras_bn.folding import fold_batchnorm
from keras_bn.statistics import recompute_statistics

__all__ = [
    "BatchNormalization",
    "convert",
    "fold_batchnorm",
    "legacy",
    "recompute_statistics",
]
__version__ = "0.1.0"
