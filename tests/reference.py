"""An independent NumPy restatement of the seed's formulas (docs/semantics.md).

Written from the seed's Theano code, not from keras_bn: the tests compare the
package against these functions, never against itself.
"""

import numpy as np


def seed_batch_statistics(x, epsilon, reduction_axes=(0,), mask=None):
    """``m = X.mean(axis=0)``; ``std = mean((X - m)**2 + eps, axis=0)**0.5``.

    With ``mask`` (broadcastable to x, true = keep), a weighted average over
    the kept positions only."""
    x = np.asarray(x, dtype="float64")
    if mask is None:
        m = x.mean(axis=reduction_axes, keepdims=True)
        std = np.mean((x - m) ** 2 + epsilon, axis=reduction_axes, keepdims=True)
        return m, std**0.5
    w = np.broadcast_to(np.asarray(mask, dtype="float64"), x.shape)
    total = w.sum(axis=reduction_axes, keepdims=True)
    m = (w * x).sum(axis=reduction_axes, keepdims=True) / total
    var = (w * (x - m) ** 2).sum(axis=reduction_axes, keepdims=True) / total
    return m, (var + epsilon) ** 0.5


def seed_featurewise(x, gamma, beta, mean, std, epsilon):
    """``gamma * (X - mean) / (std + eps) + beta`` (mode 0)."""
    return gamma * (np.asarray(x, "float64") - mean) / (std + epsilon) + beta


def seed_samplewise(x, gamma, beta, epsilon):
    """Mode 1: ``m = X.mean(axis=-1)``, ``std = X.std(axis=-1)``."""
    x = np.asarray(x, dtype="float64")
    m = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return gamma * (x - m) / (std + epsilon) + beta


def keras1_samplewise(x, gamma, beta, epsilon):
    """Keras 1.x's mode 1, from its source: ``m = K.mean(x, axis=-1)``,
    ``std = K.sqrt(K.var(x, axis=-1) + epsilon)``,
    ``gamma * (x - m) / (std + epsilon) + beta``."""
    x = np.asarray(x, dtype="float64")
    m = x.mean(axis=-1, keepdims=True)
    std = np.sqrt(x.var(axis=-1, keepdims=True) + epsilon)
    return gamma * (x - m) / (std + epsilon) + beta


def seed_running_update(running, batch_value, momentum):
    return momentum * running + (1 - momentum) * batch_value


def variance_form(x, gamma, beta, moving_mean, moving_variance, epsilon):
    """Keras 1.0.7+ / Keras 2 / Keras 3 / PyTorch inference formula."""
    return gamma * (x - moving_mean) / np.sqrt(moving_variance + epsilon) + beta


def broadcast_shape(x_shape, feature_axes):
    """``x_shape`` with size 1 on every axis but the feature axes."""
    return tuple(n if a in feature_axes else 1 for a, n in enumerate(x_shape))


def keras1_mode2(x, gamma, beta, epsilon, reduction_axes=(0,)):
    """Keras 1.x's mode 2, from its source (``normalize_batch_in_training``,
    in both phases): the batch's ``m`` and ``var``,
    ``gamma * (x - m) / sqrt(var + epsilon) + beta``."""
    x = np.asarray(x, dtype="float64")
    m = x.mean(axis=reduction_axes, keepdims=True)
    var = x.var(axis=reduction_axes, keepdims=True)
    return gamma * (x - m) / np.sqrt(var + epsilon) + beta


def renorm_train(x, gamma, beta, reference_mean, reference_std, epsilon,
                 clipping=None, reduction_axes=(0,), mask=None):  # fmt: skip
    """Batch Renormalization in training (Ioffe, 2017, Algorithm 1), in the
    seed's terms: the batch's ``m`` and ``std = sqrt(var + eps)``,
    ``r = clip((std + eps) / (reference_std + eps), rmin, rmax)``,
    ``d = clip((m - reference_mean) / (reference_std + eps), -dmax, dmax)``,
    output ``gamma * ((X - m) / (std + eps) * r + d) + beta``.

    Returns ``(y, m, std, r, d)``."""
    clipping = clipping or {}
    m, std = seed_batch_statistics(x, epsilon, reduction_axes, mask)
    r = (std + epsilon) / (reference_std + epsilon)
    d = (m - reference_mean) / (reference_std + epsilon)
    r = np.clip(r, clipping.get("rmin", -np.inf), clipping.get("rmax", np.inf))
    dmax = clipping.get("dmax", np.inf)
    d = np.clip(d, -dmax, dmax)
    x_hat = (np.asarray(x, "float64") - m) / (std + epsilon)
    return gamma * (x_hat * r + d) + beta, m, std, r, d
