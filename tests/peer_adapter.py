"""The thin adapter under the ported peer suites (tests/test_peer_*.py).

The peers test ``keras.layers.BatchNormalization``: Keras' argument names and
defaults (``axis=-1``, ``momentum=0.99``, ``epsilon=1e-3``) and a running
*variance*. keras_bn keeps a running standard deviation, and its epsilon
twice (docs/semantics.md): training divides by ``sqrt(var + eps) + eps``, and
``running_std`` follows ``sqrt(var + eps)``. The adapter maps:

- the defaults and the initializer names (``moving_mean_initializer`` to
  ``running_mean_initializer``; ``moving_variance_initializer`` to
  ``running_std_initializer``, a variance ``v`` becoming the std
  ``sqrt(v + eps) - eps`` that normalizes alike at inference);
- ``moving_variance`` to ``(running_std + eps)**2 - eps``, the variance a
  variance-form layer would need to normalize alike at inference;
- weight lists with a variance to ours.

Every expected value that changes is computed from those formulas in the
tests themselves, through tests/reference.py.
"""

import keras
import numpy as np
from keras import initializers

from keras_bn import BatchNormalization

KERAS_DEFAULTS = {"axis": -1, "momentum": 0.99, "epsilon": 1e-3}


def std_for_variance(variance, epsilon):
    """The running std that normalizes as a running variance does."""
    return np.sqrt(np.asarray(variance, dtype="float64") + epsilon) - epsilon


def _std_initializer(variance_initializer, epsilon):
    if variance_initializer is None:
        variance_initializer = "ones"
    initializer = initializers.get(variance_initializer)
    probe = np.asarray(initializer((1,)), dtype="float64")
    if not isinstance(
        initializer, (initializers.Constant, initializers.Ones, initializers.Zeros)
    ):
        raise ValueError("the adapter maps constant variance initializers only")
    return initializers.Constant(float(std_for_variance(probe[0], epsilon)))


def _keras_options(kwargs):
    """keras_bn's constructor arguments for Keras' ``kwargs``: Keras'
    defaults, its initializer names, a variance initializer as the std that
    normalizes alike (Keras' default variance of 1 where none is given and
    no running_std_initializer either, as in a config being reloaded)."""
    options = {**KERAS_DEFAULTS, **kwargs}
    if options.get("renorm"):
        # Keras' renorm keeps estimates of its own for r and d, at 0.99.
        options.setdefault("renorm_momentum", 0.99)
    if "moving_mean_initializer" in options:
        options["running_mean_initializer"] = options.pop("moving_mean_initializer")
    if (
        "moving_variance_initializer" in options
        or "running_std_initializer" not in options
    ):
        options["running_std_initializer"] = _std_initializer(
            options.pop("moving_variance_initializer", None), options["epsilon"]
        )
    return options


def peer_layer(**kwargs):
    """keras_bn.BatchNormalization, made from Keras' arguments."""
    return BatchNormalization(**_keras_options(kwargs))


@keras.saving.register_keras_serializable(package="keras_bn_peer_tests")
class PeerBatchNormalization(BatchNormalization):
    """keras_bn.BatchNormalization with Keras' defaults, for Keras' own
    run_layer_test (which makes the layer from its class and kwargs, and
    reloads it from its config)."""

    def __init__(self, **kwargs):
        super().__init__(**_keras_options(kwargs))


def moving_variance(layer):
    """The stock layer's ``moving_variance`` for a keras_bn layer."""
    running_std = np.asarray(layer.running_std.numpy(), dtype="float64")
    return (running_std + layer.epsilon) ** 2 - layer.epsilon


def weights_from_variance(layer, gamma, beta, moving_mean, moving_var):
    """A stock layer's weight list, as keras_bn's."""
    return [gamma, beta, moving_mean, std_for_variance(moving_var, layer.epsilon)]
