"""keras_bn: the 2015 Keras BatchNormalization layer on Keras 3."""

from keras_bn.batch_normalization import BatchNormalization

__all__ = ["BatchNormalization"]
__version__ = "0.1.0"
