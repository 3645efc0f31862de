"""Activations whose old meaning differs from Keras 3's of the same name.

Keras 1.x and 2.x (and tf.keras before Keras 3) computed ``hard_sigmoid``
as ``clip(0.2 * x + 0.5, 0, 1)`` on every backend; Keras 3's is
``relu6(x + 3) / 6``, a slope of 1/6. A rebuilt model gets the old one,
registered so that a saved ``.keras`` file loads it back (with keras_bn
imported).
"""

import keras

__all__ = ["OLD_MEANINGS", "legacy_hard_sigmoid"]


@keras.saving.register_keras_serializable(package="keras_bn")
def legacy_hard_sigmoid(x):
    """``clip(0.2 * x + 0.5, 0, 1)``: Keras 1.x and 2.x's ``hard_sigmoid``."""
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


# An old activation name -> what computes it today.
OLD_MEANINGS = {"hard_sigmoid": legacy_hard_sigmoid}
