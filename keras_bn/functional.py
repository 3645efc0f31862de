"""The seed's Batch Normalization math, as plain functions.

Everything that knows the seed's formulas lives here, so that the layer, the
converters, the legacy loaders and the folding code share one statement of
them (docs/semantics.md, "The seed layer"):

- batch statistics: ``m = mean(x)``, ``std = sqrt(mean((x - m)**2) + epsilon)``
  (epsilon inside the root);
- featurewise normalization: ``gamma * (x - mean) / (std + epsilon) + beta``
  (epsilon added to the std a second time);
- samplewise normalization: the population std over the last axis, no epsilon
  inside the root (Keras 1.x's ``sqrt(var + epsilon)`` as an option);
- running estimates: ``new = momentum * old + (1 - momentum) * batch``.

The tensor functions use ``keras.ops`` and run on every backend: each
formula is stated here once. Where a backend has a faster form of an
operation (``_multiply_add``, ``_sum``, ``_moments``,
``_featurewise_backward``, `sum_across_replicas`), it comes from
``keras_bn._backend``, whose docstring lists what each backend replaces,
why, and the test that holds the two to the same values. The conversion
helpers use plain arithmetic and accept NumPy arrays as well as tensors.
"""

import keras
import numpy as np
from keras import ops

from keras_bn._backend import replacement

__all__ = [
    "as_dtype",
    "batch_moments",
    "constant_like",
    "detached_like",
    "featurewise_train",
    "inference_scale_offset",
    "moving_average",
    "normalize_inference",
    "samplewise_inference",
    "samplewise_normalize",
    "statistics_dtype",
    "std_from_variance",
    "sum_across_replicas",
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
        mean, variance = _moments(x, axes)
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


def constant_like(value, like):
    """The Python number ``value`` as a tensor of ``like``'s dtype, made
    directly in that dtype (``ops.cast`` of a Python float rounds it to
    float32 first on some backends); on eager PyTorch without Keras'
    dispatch (see ``_backend``), as the layer makes two on every step."""
    fast = replacement("constant_like")
    if fast is not None:
        return fast(value, like)
    return ops.convert_to_tensor(
        value, dtype=keras.backend.standardize_dtype(like.dtype)
    )


def detached_like(value, like):
    """``value`` with no gradient, in ``like``'s shape and dtype: a batch
    statistic in the form of the running estimate it updates (one torch
    call on eager PyTorch, where this is three Keras dispatches)."""
    fast = replacement("detached_like")
    if fast is not None:
        return fast(value, like)
    value = ops.reshape(ops.stop_gradient(value), like.shape)
    return as_dtype(value, keras.backend.standardize_dtype(like.dtype))


def as_dtype(value, dtype):
    """``value`` as a tensor of ``dtype``: as it is when it already is a
    backend tensor of that dtype (on TensorFlow a ``tf.Variable`` counts as
    one, and ops read it as its value). The layer calls this on every step,
    and on eager PyTorch each Keras op (a cast of a tensor already of the
    dtype included) costs a dispatch."""
    if ops.is_tensor(value):
        if keras.backend.standardize_dtype(value.dtype) == dtype:
            return value
        return ops.cast(value, dtype)
    # Made directly in ``dtype``: ops.cast of a Python float rounds it to
    # float32 first on some backends.
    return ops.convert_to_tensor(value, dtype=dtype)


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
    return _multiply_add(x, scale, offset)


def samplewise_normalize(x, gamma, beta, epsilon, epsilon_in_root=False):
    """Mode 1 in training: each sample normalized over its last axis.

    ``gamma * (x - m) / (s + epsilon) + beta`` with the sample's mean ``m``
    and std ``s = sqrt(var)`` (the seed, Keras 0.x), or
    ``s = sqrt(var + epsilon)`` with ``epsilon_in_root`` (Keras 1.x).

    The gradient is the closed form, through ``keras.ops.custom_gradient``.
    Inference has `samplewise_inference`, the same values without a custom
    gradient (which exporters cannot always trace).
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    gamma = as_dtype(gamma, dtype)
    beta = as_dtype(beta, dtype)
    # The closed-form backward accounts for the statistics' dependence on x;
    # autodiff must not trace them.
    stats_input = ops.stop_gradient(x)
    count = _reduction_count(x, (-1,))
    mean = ops.sum(stats_input, axis=-1, keepdims=True) / count
    variance = ops.sum(ops.square(stats_input - mean), axis=-1, keepdims=True) / count
    std = ops.sqrt(variance + epsilon if epsilon_in_root else variance)

    @ops.custom_gradient
    def normalize(x, gamma, beta):
        inverse = 1.0 / (std + epsilon)
        y = _multiply_add((x - mean) * inverse, gamma, beta)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # Recomputed rather than kept from the forward pass, which would
            # hold a full-size tensor until the backward pass.
            x_hat = (x - mean) * inverse
            scaled = upstream * gamma
            # With s = std (sqrt(var), or sqrt(var + eps) with epsilon in
            # the root; either way ds/dx = (x - m) / (n * s)) and d = s + eps:
            # dx = (u - mean(u) - x_hat * mean(u * x_hat) * d / s) / d, u = dy * gamma.
            # A constant sample has s = 0 and x_hat = 0: its correction is 0.
            correction = ops.divide_no_nan(std + epsilon, std)
            sum_scaled = ops.sum(scaled, axis=-1, keepdims=True)
            sum_scaled_x_hat = ops.sum(scaled * x_hat, axis=-1, keepdims=True)
            dx = inverse * (
                scaled
                - sum_scaled / count
                - x_hat * (sum_scaled_x_hat * correction / count)
            )
            return (
                dx,
                _sum_to_shape(upstream * x_hat, gamma.shape),
                _sum_to_shape(upstream, beta.shape),
            )

        return y, grad

    return normalize(x, gamma, beta)


def samplewise_inference(x, gamma, beta, epsilon, epsilon_in_root=False):
    """Mode 1 at inference: `samplewise_normalize`'s values in plain
    operations, with no ``custom_gradient``, so that exporters (jax2tf with a
    variable batch, ``torch.export``, ONNX) can trace it; autodiff still
    gives the exact gradient."""
    count = _reduction_count(x, (-1,))
    mean = ops.sum(x, axis=-1, keepdims=True) / count
    variance = ops.sum(ops.square(x - mean), axis=-1, keepdims=True) / count
    if epsilon_in_root:
        std = ops.sqrt(variance + epsilon)
    else:
        # sqrt's derivative is infinite at 0: a constant sample would get
        # NaN gradients. Its std is 0, with derivative 0 (as the closed
        # form takes it).
        positive = variance > 0
        std = ops.where(positive, ops.sqrt(ops.where(positive, variance, 1.0)), 0.0)
    return _multiply_add((x - mean) / (std + epsilon), gamma, beta)


def _multiply_add(x, scale, offset):
    """``x * scale + offset``: compiled backends fuse the two operations
    (eager PyTorch gets a fused kernel from ``_backend``)."""
    fast = replacement("multiply_add")
    if fast is not None:
        return fast(x, scale, offset)
    return x * scale + offset


def _sum(t, axes):
    """``ops.sum(t, axes, keepdims=True)`` (regrouped on TensorFlow, whose
    XLA sums narrow kept axes slowly; see ``_backend``)."""
    fast = replacement("sum")
    if fast is not None:
        return fast(t, axes)
    return ops.sum(t, axis=axes, keepdims=True)


def sum_across_replicas(partial_sum):
    """The sum of a per-replica partial sum over all replicas: under a
    ``tf.distribute`` strategy an all-reduce (from ``_backend``); elsewhere
    the sum as it is (on JAX the batch is one global, sharded array, so its
    sums are global already)."""
    fast = replacement("sum_across_replicas")
    return partial_sum if fast is None else fast(partial_sum)


def _moments(x, axes):
    """Mean and (population) variance of ``x`` over ``axes``, kept as size-1
    dims, in two passes: the variance sums squared deviations from the mean,
    which a large mean does not cancel away."""
    # Sums over a count, not ops.mean: Keras' torch mean computes float64
    # inputs in float32.
    count = _reduction_count(x, axes)
    fast = replacement("moments")
    if fast is not None:
        return fast(x, axes, count)
    mean = _sum(x, axes) / count
    return mean, _sum(ops.square(x - mean), axes) / count


def _sum_to_shape(t, shape):
    """Sums ``t`` down to ``shape``: the gradient of broadcasting a tensor of
    ``shape`` to ``t``'s shape."""
    shape = tuple(shape)
    extra = len(t.shape) - len(shape)
    axes = tuple(a for a in range(extra) if t.shape[a] != 1) + tuple(
        extra + i
        for i, size in enumerate(shape)
        if size == 1 and t.shape[extra + i] != 1
    )
    if axes:
        t = ops.sum(t, axis=axes, keepdims=True)
    return _reshape(t, shape) if extra else t


def _reshape(t, shape):
    """``ops.reshape`` (a plain reshape on eager PyTorch: see ``_backend``)."""
    fast = replacement("reshape")
    if fast is not None:
        return fast(t, shape)
    return ops.reshape(t, shape)


def _reduction_count(x, axes):
    """Number of elements each statistic averages over, as a tensor (the batch
    size may be unknown until run time), at least 1: the statistics of an
    empty batch come out 0 and ``sqrt(epsilon)``, not NaN, so that its
    gradients stay finite (the layer leaves its running estimates alone)."""
    shape = ops.shape(x)
    count = 1
    for axis in axes:
        count = count * shape[axis]
    if isinstance(count, int):
        return ops.cast(max(count, 1), x.dtype)
    return ops.maximum(ops.cast(count, x.dtype), 1.0)


def featurewise_train(x, gamma, beta, axes, epsilon):
    """Mode 0 in training: normalize with the batch statistics.

    Returns ``(y, mean, std)``, the statistics with size-1 dims over
    ``axes``. The gradient is the closed form, through
    ``keras.ops.custom_gradient``: the forward pass reads ``x`` for the two
    statistics and once more for ``y = x * scale + offset``; the backward
    pass takes two sums over ``dy`` and ``x`` and writes ``dx`` in one
    multiply-add pass, with no full-size temporary.
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    gamma = as_dtype(gamma, dtype)
    beta = as_dtype(beta, dtype)
    # The closed-form backward accounts for the statistics' dependence on x;
    # autodiff must not trace them.
    mean, std = batch_moments(ops.stop_gradient(x), axes, epsilon)
    fast_backward = replacement("featurewise_backward")

    @ops.custom_gradient
    def normalize(x, gamma, beta):
        scale, offset = inference_scale_offset(gamma, beta, mean, std, epsilon)
        y = _multiply_add(x, scale, offset)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            inputs = (upstream, x, gamma, mean, std, epsilon, axes)
            sums = None if fast_backward is None else fast_backward(*inputs)
            if sums is None:
                sums = _featurewise_backward(*inputs)
            dx, sum_dy_centered, sum_dy = sums
            return (
                dx,
                _sum_to_shape(sum_dy_centered / (std + epsilon), gamma.shape),
                _sum_to_shape(sum_dy, beta.shape),
            )

        return y, grad

    return normalize(x, gamma, beta), mean, std


def _featurewise_backward(upstream, x, gamma, mean, std, epsilon, axes):
    """Mode 0's closed-form gradient: ``dx``, ``sum(dy * (x - mean))`` and
    ``sum(dy)`` (the last two give ``gamma``'s and ``beta``'s gradients).

    With ``d = std + eps``, ``std = sqrt(var + eps)`` and ``n`` the count::

        dx = gamma / d * (dy - sum(dy) / n
                          - (x - mean) * sum(dy * (x - mean)) / (n * std * d))
           = dy * scale + x * slope - (scale * sum(dy) / n + mean * slope)

    with ``scale = gamma / d``: two sums over ``dy`` and ``x`` and one
    multiply-add pass, no full-size temporary. ``sum(dy * (x - mean))`` is
    summed centered: as ``sum(dy * x) - mean * sum(dy)`` a batch far from
    zero would cancel its own digits away (float32, a mean 1000 times the
    std: a gamma gradient off by 1.6e-4 of its size; centered, 2e-6).
    ``dx`` stays uncentered, ``x * slope - mean * slope``: centering it too
    would make XLA write ``x - mean`` out in full (below). That costs digits
    only when ``dy`` correlates with ``x``, where the slope terms are large:
    about 1e-6 of ``dx`` at mean/std 1000, against 8e-7 for PyTorch's fused
    kernel (``_backend``), which centers.
    """
    count = _reduction_count(x, axes)
    scale = gamma / (std + epsilon)
    sum_dy = _sum(upstream, axes)
    # x + (-mean), not x - mean: XLA would merge the latter with the
    # forward pass's deviations (the variance's), and a subtraction with two
    # users is written out in full on CPU; this way each pass centers on the
    # fly, and no full-size temporary is written (XLA as jax 0.10.2 and
    # TensorFlow 2.21 ship it; were it to fold this back into x - mean, the
    # step stays correct and gets about 20% slower on CPU).
    sum_dy_centered = _sum(upstream * (x + (-mean)), axes)
    slope = -scale * sum_dy_centered / (count * std * (std + epsilon))
    shift = scale * sum_dy / count + mean * slope
    return upstream * scale + x * slope - shift, sum_dy_centered, sum_dy


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
