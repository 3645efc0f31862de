"""The layer's training step: batch statistics, ghost batches, masks and the
running estimates' update.

Functions of a `keras_bn.BatchNormalization` and its public attributes
(``mode``, ``synchronized``, ``skip_non_finite``, ``virtual_batch_size``,
``samplewise_epsilon_in_root``, ``reduction_axes``, ``momentum``, the
running-estimate variables); the math itself is `keras_bn.functional`'s.
"""

from keras import ops

from keras_bn import functional


def train(layer, x, gamma, beta, epsilon, mask, reference=None):
    """Training output, the statistics for the running estimates, and, with
    a mask or ``skip_non_finite``, how many positions each statistic saw
    (else None). Ghost batches when the layer has a ``virtual_batch_size``.
    ``reference``: with ``renorm``, the ``(mean, std)`` estimates that Batch
    Renormalization corrects the batch's statistics towards."""
    if layer.virtual_batch_size is not None:
        return _train_ghost_batches(layer, x, gamma, beta, epsilon, mask, reference)
    return _train(layer, x, gamma, beta, epsilon, mask, layer.reduction_axes, reference)


def _train(layer, x, gamma, beta, epsilon, mask, reduction_axes, reference=None):
    across = functional.sum_across_replicas if layer.synchronized else None
    if layer.mode == 0 and mask is None and across is None:
        if reference is not None:
            # r and d need the batch's statistics first: computed here too,
            # without a gradient (compilers merge the two passes).
            batch = functional.batch_moments(
                ops.stop_gradient(x), reduction_axes, epsilon
            )
            r, d = functional.renorm_correction(
                *batch, *reference, epsilon, layer.renorm_clipping
            )
            gamma, beta = gamma * r, beta + gamma * d
        y, mean, std = functional.featurewise_train(
            x, gamma, beta, reduction_axes, epsilon
        )
        if layer.skip_non_finite:
            return (y, *_finite_statistics(x, epsilon, mask, reduction_axes, across))
        return y, mean, std, None
    mean, std = functional.batch_moments(
        # Mode 1's output does not depend on these statistics, and without
        # a gradient to track, PyTorch computes them in place.
        x if layer.mode == 0 else ops.stop_gradient(x),
        reduction_axes,
        epsilon,
        mask,
        across,
    )
    if reference is not None:
        # r and d are constants to autodiff, as in the paper: it
        # differentiates through mean and std only.
        r, d = functional.renorm_correction(
            mean, std, *reference, epsilon, layer.renorm_clipping
        )
        y = functional.renormalize(x, gamma, beta, mean, std, r, d, epsilon)
    elif layer.mode == 0:
        # Autodiff differentiates through mean and std here.
        y = functional.normalize_inference(x, gamma, beta, mean, std, epsilon)
    else:
        y = functional.samplewise_normalize(
            x, gamma, beta, epsilon, layer.samplewise_epsilon_in_root
        )
    if layer.skip_non_finite:
        return (y, *_finite_statistics(x, epsilon, mask, reduction_axes, across))
    count = None
    if mask is not None:
        count = ops.sum(
            ops.broadcast_to(ops.cast(mask, x.dtype), ops.shape(x)),
            axis=reduction_axes,
            keepdims=True,
        )
        if across is not None:
            count = across(count)
    return y, mean, std, count


def _finite_statistics(x, epsilon, mask, reduction_axes, across):
    """``skip_non_finite``: the batch statistics over the finite (and
    unmasked) positions only, and how many each saw: an extra pass over
    the batch, with a full-size mask."""
    x = ops.stop_gradient(x)
    keep = ops.isfinite(x)
    if mask is not None:
        keep = ops.logical_and(keep, ops.cast(mask, "bool"))
    mean, std = functional.batch_moments(
        ops.where(keep, x, ops.zeros_like(x)), reduction_axes, epsilon, keep, across
    )
    count = ops.sum(ops.cast(keep, x.dtype), axis=reduction_axes, keepdims=True)
    if across is not None:
        count = across(count)
    return mean, std, count


def _train_ghost_batches(layer, x, gamma, beta, epsilon, mask, reference=None):
    """Ghost batch normalization: statistics over each run of
    ``virtual_batch_size`` samples; the running estimates follow the mean
    of the ghost batches' statistics (weighted by their unmasked counts
    when there is a mask)."""
    size = layer.virtual_batch_size
    batch = x.shape[0]
    if batch is not None and batch % size:
        raise ValueError(
            f"virtual_batch_size: the batch size must be a multiple of "
            f"{size}, got a batch of {batch}."
        )

    def split(t):
        return ops.reshape(t, (-1, size, *t.shape[1:]))

    if mask is not None:
        mask = split(ops.broadcast_to(mask, ops.shape(x)))
    axes = tuple(a + 1 for a in layer.reduction_axes)
    # The parameters (and renorm's reference estimates) broadcast over the
    # ghost-batch axis.
    if reference is not None:
        reference = tuple(ops.expand_dims(value, 0) for value in reference)
    y, mean, std, count = _train(
        layer,
        split(x),
        ops.expand_dims(gamma, 0),
        ops.expand_dims(beta, 0),
        epsilon,
        mask,
        axes,
        reference,
    )
    y = ops.reshape(y, ops.shape(x))
    if count is None:
        # A sum over a count, not ops.mean, which computes float64 in
        # float32 on the torch backend.
        ghosts = ops.cast(ops.shape(x)[0] // size, x.dtype)
        return y, ops.sum(mean, axis=0) / ghosts, ops.sum(std, axis=0) / ghosts, None
    total = ops.sum(count, axis=0)
    weights = count / ops.maximum(total, 1.0)
    return (
        y,
        ops.sum(weights * mean, axis=0),
        ops.sum(weights * std, axis=0),
        total,
    )


def broadcastable_mask(mask, x):
    """The mask with the input's rank, checked against the input's shape.

    As the stock layer takes it: of the input's rank without its last axis
    (as Keras masks come), or of the input's rank, and broadcastable to the
    input (each size the input's or 1)."""
    if mask is None:
        return None
    mask_shape, x_shape = tuple(mask.shape), tuple(x.shape)
    if len(mask_shape) == len(x_shape) - 1:
        mask = ops.expand_dims(mask, -1)
        mask_shape = (*mask_shape, 1)
    fits = len(mask_shape) == len(x_shape) and all(
        m is None or n is None or m in (n, 1) for m, n in zip(mask_shape, x_shape)
    )
    if not fits:
        raise ValueError(
            "mask: expected a shape of the input's rank, or of its rank "
            "without the last axis, that broadcasts to the input's shape "
            f"{x_shape} (each size the input's or 1), got {tuple(mask.shape)}."
        )
    return mask


def update_running(layer, mean, std, count=None, nonempty=None):
    """The seed's update, of the running estimates with ``momentum`` (and,
    with ``renorm_momentum``, of renorm's own with that). A feature that the
    batch gave no position for (``count`` 0: masked, or non-finite with
    ``skip_non_finite``) keeps its estimates, as do all features when
    ``nonempty`` (a scalar boolean tensor) is false; with
    ``skip_non_finite``, so does a feature whose statistics still came out
    non-finite (sums beyond the dtype's range)."""
    running = (layer.running_mean, layer.running_std)
    batch_values = [
        functional.detached_like(value, variable.value)
        for value, variable in zip((mean, std), running)
    ]
    keep = None if count is None else ops.reshape(count, running[0].shape) > 0
    if layer.skip_non_finite:
        finite = ops.logical_and(*(ops.isfinite(v) for v in batch_values))
        keep = finite if keep is None else ops.logical_and(keep, finite)
    if nonempty is not None:
        keep = nonempty if keep is None else ops.logical_and(keep, nonempty)
    groups = [(running, layer.momentum)]
    if layer.renorm_momentum is not None:
        groups.append(((layer.renorm_mean, layer.renorm_std), layer.renorm_momentum))
    for variables, rate in groups:
        momentum = functional.constant_like(rate, batch_values[0])
        for variable, batch_value in zip(variables, batch_values):
            # The variable's value, not the variable: arithmetic on a Keras
            # variable is a Keras op, on its tensor the backend's own.
            value = variable.value
            updated = functional.moving_average(value, batch_value, momentum)
            if keep is not None:
                updated = ops.where(keep, updated, value)
            variable.assign(updated)
