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

import functools
from collections.abc import Callable
from typing import NamedTuple

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
    "keras1_batch_normalize",
    "moving_average",
    "normalize_inference",
    "renorm_correction",
    "renormalize",
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


def statistics_dtype(dtype, compute_dtype="float32"):
    """The dtype to compute statistics in: float32 for half-precision inputs,
    whose squares overflow easily; for integer inputs, that of
    ``compute_dtype`` (a layer's: integers are cast to it, as Keras layers
    cast their inputs, so that uint8 images give the float result); else the
    input's own. Bool, complex and string inputs raise ``TypeError``."""
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype in ("float16", "bfloat16"):
        return "float32"
    if keras.backend.is_float_dtype(dtype):
        return dtype
    if keras.backend.is_int_dtype(dtype):
        return statistics_dtype(compute_dtype)
    raise TypeError(
        f"inputs: expected a tensor of real numbers (float or int), got dtype {dtype}."
    )


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


def renorm_correction(mean, std, reference_mean, reference_std, epsilon, clipping):
    """Batch Renormalization's ``r`` and ``d`` (Ioffe, 2017, Algorithm 1) in
    the seed's terms, constants to every derivative (``stop_gradient``)::

        r = clip((std + eps) / (reference_std + eps), rmin, rmax)
        d = clip((mean - reference_mean) / (reference_std + eps), -dmax, dmax)

    with the batch's ``mean`` and ``std = sqrt(var + eps)``: unclipped, the
    training output `renormalize` gives is then the inference output with
    the reference (running) estimates. ``clipping``: a dict with any of
    ``rmin``, ``rmax``, ``dmax``."""
    denominator = reference_std + epsilon
    r = ops.stop_gradient((std + epsilon) / denominator)
    d = ops.stop_gradient((mean - reference_mean) / denominator)
    if "rmin" in clipping:
        r = ops.maximum(r, clipping["rmin"])
    if "rmax" in clipping:
        r = ops.minimum(r, clipping["rmax"])
    if "dmax" in clipping:
        d = ops.clip(d, -clipping["dmax"], clipping["dmax"])
    return r, d


def renormalize(x, gamma, beta, mean, std, r, d, epsilon):
    """Mode 0 in training with Batch Renormalization:
    ``gamma * ((x - mean) / (std + eps) * r + d) + beta``, the batch's
    ``mean`` and ``std`` corrected by `renorm_correction`'s ``r`` and ``d``
    (one multiply-add per element, as at inference)."""
    return normalize_inference(x, gamma * r, beta + gamma * d, mean, std, epsilon)


def keras1_batch_normalize(x, gamma, beta, axes, epsilon, mask=None):
    """Mode 2 (Keras 1.x), in both phases: ``gamma * (x - m) /
    sqrt(var + epsilon) + beta`` with the batch's statistics over ``axes``
    (masked positions left out of them), epsilon inside the root only, as
    Keras 1.x's ``normalize_batch_in_training`` computed it. Plain
    operations: autodiff gives every derivative."""
    mean, std = batch_moments(x, axes, epsilon, mask)
    return _multiply_add((x - mean) / std, gamma, beta)


def samplewise_normalize(x, gamma, beta, epsilon, epsilon_in_root=False):
    """Mode 1 in training: each sample normalized over its last axis.

    ``gamma * (x - m) / (s + epsilon) + beta`` with the sample's mean ``m``
    and std ``s = sqrt(var)`` (the seed, Keras 0.x), or
    ``s = sqrt(var + epsilon)`` with ``epsilon_in_root`` (Keras 1.x).

    Differentiated in closed form (`_samplewise_rules`), to every order
    (see `_differentiable`). Inference has `samplewise_inference`, the same
    values without a custom gradient (which exporters cannot always trace).
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    gamma = as_dtype(gamma, dtype)
    beta = as_dtype(beta, dtype)
    y, _, _ = _differentiable(_samplewise_rules(bool(epsilon_in_root)))(
        x, gamma, beta, epsilon
    )
    return y


def samplewise_inference(x, gamma, beta, epsilon, epsilon_in_root=False):
    """Mode 1 at inference: `samplewise_normalize`'s values in plain
    operations, with no ``custom_gradient``, so that exporters (jax2tf with a
    variable batch, ``torch.export``, ONNX) can trace it; autodiff still
    gives the exact gradient."""
    mean, std = _samplewise_statistics(x, epsilon, epsilon_in_root)
    return _multiply_add((x - mean) / (std + epsilon), gamma, beta)


def _samplewise_statistics(x, epsilon, epsilon_in_root):
    """Each sample's mean and std over the last axis (kept as a size-1 dim):
    ``sqrt(var)``, or ``sqrt(var + epsilon)`` with ``epsilon_in_root``."""
    count = _reduction_count(x, (-1,))
    mean = ops.sum(x, axis=-1, keepdims=True) / count
    variance = ops.sum(ops.square(x - mean), axis=-1, keepdims=True) / count
    if epsilon_in_root:
        return mean, ops.sqrt(variance + epsilon)
    # sqrt's derivative is infinite at 0: a constant sample would get NaN
    # gradients. Its std is 0, with derivative 0 (as the closed form takes
    # it).
    positive = variance > 0
    return mean, ops.where(positive, ops.sqrt(ops.where(positive, variance, 1.0)), 0.0)


@functools.cache
def _samplewise_rules(epsilon_in_root):
    """Mode 1's closed form (`ClosedForm`): statistics per sample over the
    last axis; ``gamma`` varies along that axis."""

    def statistics(x, epsilon):
        return _samplewise_statistics(x, epsilon, epsilon_in_root)

    def normalize(x, gamma, beta, epsilon, stats):
        mean, std = stats
        return _multiply_add((x - mean) / (std + epsilon), gamma, beta)

    def tangent(x, gamma, beta, epsilon, stats, tx, tgamma, tbeta):
        # With s = std and d = s + eps: ds = sum((x - m) * dx) / (n * s)
        # (0 for a constant sample, whose s = 0), dm = mean(dx),
        # d(x_hat) = (dx - dm) / d - x_hat * ds / d.
        mean, std = stats
        count = _reduction_count(x, (-1,))
        inverse = 1.0 / (std + epsilon)
        centered = x - mean
        x_hat = centered * inverse
        t_mean = ops.sum(tx, axis=-1, keepdims=True) / count
        t_std = _divide_or_zero(
            ops.sum(centered * tx, axis=-1, keepdims=True), count * std
        )
        t_x_hat = (tx - t_mean) * inverse - x_hat * (t_std * inverse)
        return (gamma * t_x_hat + tgamma * x_hat + tbeta, t_mean, t_std)

    def backward(upstream, x, gamma, beta, epsilon, stats, fast):
        mean, std = stats
        count = _reduction_count(x, (-1,))
        inverse = 1.0 / (std + epsilon)
        x_hat = (x - mean) * inverse
        scaled = upstream * gamma
        # With s = std (sqrt(var), or sqrt(var + eps) with epsilon in
        # the root; either way ds/dx = (x - m) / (n * s)) and d = s + eps:
        # dx = (u - mean(u) - x_hat * mean(u * x_hat) * d / s) / d, u = dy * gamma.
        # A constant sample has s = 0 and x_hat = 0: its correction is 0.
        correction = _divide_or_zero(std + epsilon, std)
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

    return ClosedForm(statistics, normalize, tangent, backward)


def _divide_or_zero(numerator, denominator):
    """``numerator / denominator``, 0 where the denominator is 0, in the
    inputs' dtype (``ops.divide_no_nan`` computes float64 in float32 on the
    torch backend), with finite derivatives everywhere."""
    nonzero = denominator != 0
    safe = ops.where(nonzero, denominator, ops.ones_like(denominator))
    return ops.where(nonzero, numerator / safe, ops.zeros_like(numerator / safe))


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
    ``axes`` (for the running estimates, which take them without a
    gradient). Differentiated in closed form (`_featurewise_rules`), to
    every order (see `_differentiable`): the forward pass reads ``x`` for
    the two statistics and once more for ``y = x * scale + offset``; the
    backward pass takes two sums over ``dy`` and ``x`` and writes ``dx`` in
    one multiply-add pass, with no full-size temporary.
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    gamma = as_dtype(gamma, dtype)
    beta = as_dtype(beta, dtype)
    rules = _featurewise_rules(tuple(axes))  # made once per reduction axes
    return _differentiable(rules)(x, gamma, beta, epsilon)


@functools.cache
def _featurewise_rules(axes):
    """Mode 0's closed form (`ClosedForm`) over the reduction ``axes``."""

    def statistics(x, epsilon):
        return batch_moments(x, axes, epsilon)

    def normalize(x, gamma, beta, epsilon, stats):
        mean, std = stats
        scale, offset = inference_scale_offset(gamma, beta, mean, std, epsilon)
        return _multiply_add(x, scale, offset)

    def tangent(x, gamma, beta, epsilon, stats, tx, tgamma, tbeta):
        # y = x * scale + (beta - mean * scale), scale = gamma / (std + eps):
        # dy = dx * scale + (x - mean) * dscale + dbeta - dmean * scale, with
        # dmean = mean(dx), dstd = sum((x - mean) * dx) / (n * std),
        # dscale = (dgamma - scale * dstd) / (std + eps).
        # Reverse mode is this, transposed (JAX does it): the sums over
        # dx * x become dx's x * slope term, and (x - mean) * dscale
        # becomes gamma's centered sum, as in `_featurewise_backward`.
        mean, std = stats
        count = _reduction_count(x, axes)
        scale = gamma / (std + epsilon)
        t_mean = _sum(tx, axes) / count
        t_std = (_sum(tx * x, axes) / count - mean * t_mean) / std
        t_scale = (tgamma - scale * t_std) / (std + epsilon)
        # x + (-mean): see `_featurewise_backward`.
        t_y = tx * scale + (x + (-mean)) * t_scale + (tbeta - t_mean * scale)
        return t_y, t_mean, t_std

    def backward(upstream, x, gamma, beta, epsilon, stats, fast):
        mean, std = stats
        inputs = (upstream, x, gamma, mean, std, epsilon, axes)
        fast_backward = replacement("featurewise_backward") if fast else None
        sums = None if fast_backward is None else fast_backward(*inputs)
        if sums is None:
            sums = _featurewise_backward(*inputs)
        dx, sum_dy_centered, sum_dy = sums
        return (
            dx,
            _sum_to_shape(sum_dy_centered / (std + epsilon), gamma.shape),
            _sum_to_shape(sum_dy, beta.shape),
        )

    return ClosedForm(statistics, normalize, tangent, backward)


class ClosedForm(NamedTuple):
    """A normalization with its derivatives in closed form, as
    `_differentiable` and the backends' replacements of it take it: each
    function of the inputs ``x, gamma, beta, epsilon`` (and of the
    statistics, once computed).

    - ``statistics(x, epsilon)``: the statistics, a tuple of tensors;
    - ``normalize(x, gamma, beta, epsilon, stats)``: the output;
    - ``tangent(x, gamma, beta, epsilon, stats, tx, tgamma, tbeta)``: the
      output's and the statistics' tangents (forward mode, linear in
      ``tx, tgamma, tbeta``);
    - ``backward(upstream, x, gamma, beta, epsilon, stats, fast)``: the
      gradients of ``sum(output * upstream)`` for ``x, gamma, beta`` in
      their shapes (reverse mode); ``fast`` allows a backend's fused kernel,
      which gives first derivatives only.
    """

    statistics: Callable
    normalize: Callable
    tangent: Callable
    backward: Callable


def _differentiable(rules):
    """``f(x, gamma, beta, epsilon) -> (output, *statistics)`` for the
    closed form ``rules``, differentiable to every order, in forward and
    reverse mode.

    JAX and PyTorch have replacements (``_backend``): a ``jax.custom_jvp``
    (JAX transposes the tangent rule into the reverse pass, and every
    transform follows), and a ``torch.autograd.Function`` that takes
    ``torch.func``'s transforms. The generic form is ``custom_gradient``
    with the statistics computed outside it, where tapes see them: a
    higher-order derivative then differentiates the backward pass through
    its dependence on ``x``, the statistics' included.
    """
    fast = replacement("differentiable")
    if fast is not None:
        return fast(rules)

    def function(x, gamma, beta, epsilon):
        stats = rules.statistics(x, epsilon)

        @ops.custom_gradient
        def normalize(x, gamma, beta):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return rules.backward(upstream, x, gamma, beta, epsilon, stats, True)

            return rules.normalize(x, gamma, beta, epsilon, stats), grad

        return (normalize(x, gamma, beta), *stats)

    return function


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
