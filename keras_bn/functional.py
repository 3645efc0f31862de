"""The seed's Batch Normalization math, as plain functions.

Everything that knows the seed's formulas lives here, so that the layer, the
converters, the legacy loaders and the folding code share one statement of
them (SEMANTICS.md, "The seed layer, exactly"):

- batch statistics: ``m = mean(x)``, ``std = sqrt(mean((x - m)**2) + epsilon)``
  (epsilon inside the root);
- featurewise normalization: ``gamma * (x - mean) / (std + epsilon) + beta``
  (epsilon added to the std a second time);
- samplewise normalization: the population std over the last axis, no epsilon
  inside the root;
- running estimates: ``new = momentum * old + (1 - momentum) * batch``.

The tensor functions use ``keras.ops`` and run on every backend; the
conversion helpers use plain arithmetic and accept NumPy arrays as well as
tensors.
"""

import keras
import numpy as np
from keras import ops

__all__ = [
    "batch_moments",
    "featurewise_train",
    "inference_scale_offset",
    "moving_average",
    "normalize_inference",
    "samplewise_normalize",
    "std_from_variance",
    "variance_from_std",
]


def batch_moments(x, axes, epsilon, mask=None, across_replicas=None):
    """Batch mean and seed std of ``x`` over ``axes`` (kept as size-1 dims).

    ``std = sqrt(mean((x - mean)**2) + epsilon)``. Positions where ``mask``
    (broadcastable to ``x``, true = keep) is false enter neither statistic.
    ``across_replicas``, when given, sums a per-replica partial sum over all
    replicas (an all-reduce): the statistics are then those of the global
    batch, still in two passes (mean first, then squared deviations).
    """
    if mask is None and across_replicas is None:
        # Sums over a count, not ops.mean: Keras' torch mean computes float64
        # inputs in float32.
        count = _reduction_count(x, axes)
        mean = ops.sum(x, axis=axes, keepdims=True) / count
        variance = ops.sum(ops.square(x - mean), axis=axes, keepdims=True) / count
        return mean, ops.sqrt(variance + epsilon)

    def total(t):
        t = ops.sum(t, axis=axes, keepdims=True)
        return t if across_replicas is None else across_replicas(t)

    if mask is None:
        weights = ops.ones_like(x)
    else:
        weights = ops.broadcast_to(ops.cast(mask, x.dtype), ops.shape(x))
    # A feature whose every position is masked gets count 0; the floor
    # keeps its statistics at 0 instead of NaN.
    count = ops.maximum(total(weights), 1.0)
    mean = total(x * weights) / count
    variance = total(ops.square(x - mean) * weights) / count
    return mean, ops.sqrt(variance + epsilon)


def statistics_dtype(dtype):
    """The dtype to compute statistics in: float32 for half-precision inputs,
    whose squares overflow easily, else the input's own."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def moving_average(running, batch_value, momentum):
    """The seed's running-estimate update."""
    return momentum * running + (1.0 - momentum) * batch_value


def inference_scale_offset(gamma, beta, running_mean, running_std, epsilon):
    """Per-feature ``scale, offset`` with ``gamma * (x - rm) / (rs + eps) + beta
    == x * scale + offset``. Works on NumPy arrays and tensors alike."""
    scale = gamma / (running_std + epsilon)
    return scale, beta - running_mean * scale


def normalize_inference(x, gamma, beta, running_mean, running_std, epsilon):
    """Mode 0 at inference: one multiply-add per element."""
    scale, offset = inference_scale_offset(
        gamma, beta, running_mean, running_std, epsilon
    )
    return x * scale + offset


def samplewise_normalize(x, gamma, beta, epsilon):
    """Mode 1: each sample normalized over its last axis, in both phases."""
    count = _reduction_count(x, (-1,))
    mean = ops.sum(x, axis=-1, keepdims=True) / count
    std = ops.sqrt(ops.sum(ops.square(x - mean), axis=-1, keepdims=True) / count)
    return gamma * (x - mean) / (std + epsilon) + beta


def _sum_to_shape(t, shape):
    """Sums ``t`` over the axes where ``shape`` has size 1 and ``t`` not."""
    axes = tuple(i for i, (n, m) in enumerate(zip(t.shape, shape)) if m == 1 and n != 1)
    return ops.sum(t, axis=axes, keepdims=True) if axes else t


def _reduction_count(x, axes):
    """Number of elements each statistic averages over, as a tensor (the batch
    size may be unknown until run time)."""
    shape = ops.shape(x)
    count = 1
    for axis in axes:
        count = count * shape[axis]
    return ops.cast(count, x.dtype)


def featurewise_train(x, gamma, beta, axes, epsilon):
    """Mode 0 in training: normalize with the batch statistics.

    Returns ``(y, mean, std)``, the statistics with size-1 dims over
    ``axes``. The gradient is the closed form, through
    ``keras.ops.custom_gradient``: two reductions and one elementwise pass,
    instead of autodiff's chain of full-size temporaries.
    """
    mean, std = batch_moments(x, axes, epsilon)
    # The closed-form backward accounts for the statistics' dependence on x;
    # autodiff must not add it a second time.
    mean = ops.stop_gradient(mean)
    std = ops.stop_gradient(std)

    @ops.custom_gradient
    def normalize(x, gamma, beta):
        inverse = 1.0 / (std + epsilon)
        scale = gamma * inverse
        y = x * scale + (beta - mean * scale)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            count = _reduction_count(x, axes)
            x_hat = (x - mean) * inverse
            sum_dy = ops.sum(upstream, axis=axes, keepdims=True)
            sum_dy_x_hat = ops.sum(upstream * x_hat, axis=axes, keepdims=True)
            # With s = std + eps and std = sqrt(var + eps):
            # dx = gamma / s * (dy - mean(dy) - x_hat * mean(dy * x_hat) * s / std)
            correction = (std + epsilon) / std
            dx = scale * (
                upstream - sum_dy / count - x_hat * (sum_dy_x_hat * correction / count)
            )
            return (
                dx,
                _sum_to_shape(sum_dy_x_hat, gamma.shape),
                _sum_to_shape(sum_dy, beta.shape),
            )

        return y, grad

    return normalize(x, gamma, beta), mean, std


def std_from_variance(variance, variance_epsilon, std_epsilon):
    """Seed-form running std equal at inference to a variance-form layer.

    ``(x - m) / (rs + e) == (x - m) / sqrt(mv + ek)`` for every ``x`` exactly
    when ``rs = sqrt(mv + ek) - e``.
    """
    return np.sqrt(np.asarray(variance) + variance_epsilon) - std_epsilon


def variance_from_std(running_std, std_epsilon, variance_epsilon):
    """Variance-form running variance equal at inference to a seed-form layer:
    ``mv = (rs + e)**2 - ek``. Raises when that would be negative."""
    variance = np.square(np.asarray(running_std) + std_epsilon) - variance_epsilon
    if np.any(variance < 0):
        raise ValueError(
            "running_std: (running_std + epsilon)**2 must be at least the "
            f"target epsilon {variance_epsilon} to convert to a variance; "
            f"the smallest running_std is {np.min(running_std)}."
        )
    return variance
