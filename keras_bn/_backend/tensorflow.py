"""TensorFlow replacements for functional.py's generic math (see the table
in ``keras_bn/_backend/__init__.py``)."""

import math

import tensorflow as tf
from keras import ops

# Reductions whose kept (trailing) axes hold fewer elements than this are
# regrouped; see sum.
_WIDE_ROW = 1024


def sum(t, axes):  # noqa: A001 (the operation it replaces is named so)
    """``ops.sum(t, axes, keepdims=True)``, arranged for TensorFlow's XLA.

    XLA as TensorFlow ships it (2.21) sums away a leading block of axes in
    scalar loops when the trailing axes it keeps are narrow: the 64 channels
    of a 64x32x32x64 tensor took ten times as long as a multiply-add over it.
    Summing groups of rows viewed as one wide row, then the groups, is the
    same sum and vectorizes. (JAX's XLA is fast either way.)
    """
    ndim = len(t.shape)
    axes = sorted(a % ndim for a in axes)
    kept = t.shape[len(axes) :]
    if axes == list(range(len(axes))):
        rows = 1
        for size in t.shape[: len(axes)]:
            rows = None if rows is None or size is None else rows * size
        features = math.prod(kept)
        group = _WIDE_ROW // features
        if rows is not None and group > 1 and rows % group == 0:
            wide = ops.reshape(t, (rows // group, group * features))
            total = ops.sum(ops.reshape(ops.sum(wide, axis=0), (group, features)), 0)
            return ops.reshape(total, (1,) * len(axes) + tuple(kept))
    return ops.sum(t, axis=axes, keepdims=True)


def sum_across_replicas(partial_sum):
    """All-reduces a per-replica sum under a ``tf.distribute`` strategy; the
    sum as it is outside one (or with a single replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return partial_sum
    return context.all_reduce(tf.distribute.ReduceOp.SUM, partial_sum)
