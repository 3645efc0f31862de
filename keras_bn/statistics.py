"""Population statistics for a model's keras_bn layers, recomputed from data.

A layer's running estimates follow a momentum average of recent batches;
after loading weights that saved none (Keras 0.1.x), after fine-tuning, or
after weights from elsewhere, one wants them computed afresh over a whole
data set, as the paper's Algorithm 2 does. PyTorch has this only outside its
layer (``torch.optim.swa_utils.update_bn``); Keras has nothing.
"""

import contextlib
import math
import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_bn import _validation, functional
from keras_bn._backend import replacement
from keras_bn.batch_normalization import BatchNormalization

__all__ = ["recompute_statistics"]


class _PooledMoments:
    """Count, mean and sum of squared deviations of every value seen, per
    feature, in float64; batches merge exactly (Chan, Golub and LeVeque's
    pairwise update), so the result does not depend on how the data was
    cut into batches."""

    def __init__(self):
        self.count = self.mean = self.squares = 0.0

    def add(self, x, axes, mask):
        x = np.asarray(x, dtype="float64")
        if mask is None:
            weights = np.ones_like(x)
        else:
            weights = np.broadcast_to(np.asarray(mask, dtype="float64"), x.shape)
        count = np.sum(weights, axis=axes, keepdims=True)
        # A feature masked out of a whole batch adds nothing; the floor only
        # avoids 0 / 0.
        mean = np.sum(weights * x, axis=axes, keepdims=True) / np.maximum(count, 1)
        squares = np.sum(weights * np.square(x - mean), axis=axes, keepdims=True)
        total = self.count + count
        delta = mean - self.mean
        share = count / np.maximum(total, 1)
        self.mean = self.mean + delta * share
        self.squares = self.squares + squares + np.square(delta) * self.count * share
        self.count = total

    def variance(self):
        return self.squares / np.maximum(self.count, 1)


def _is_arrays(data):
    """Whether ``data`` is an array or a list/tuple/dict of arrays (the
    model's inputs, as ``model.predict`` takes them)."""
    leaves = keras.tree.flatten(data)
    return bool(leaves) and all(
        hasattr(leaf, "shape") and hasattr(leaf, "__getitem__") and len(leaf.shape)
        for leaf in leaves
    )


def _batches(data, batch_size):
    """``(iterate, steps)``: a function giving a fresh iterator over the
    batches' model inputs, and their number (None where unknown)."""
    if _is_arrays(data):
        sizes = {int(leaf.shape[0]) for leaf in keras.tree.flatten(data)}
        if len(sizes) != 1:
            raise ValueError(
                "data: every input array must hold the same number of samples, "
                f"got {sorted(sizes)}."
            )
        (size,) = sizes
        if size == 0:
            raise ValueError("data: expected at least one sample, got none.")

        def iterate():
            for start in range(0, size, batch_size):
                yield keras.tree.map_structure(
                    lambda a, start=start: a[start : start + batch_size], data
                )

        return iterate, math.ceil(size / batch_size)
    try:
        is_iterator = iter(data) is data
    except TypeError:
        raise TypeError(
            "data: expected an array, a list/tuple/dict of arrays, or a "
            "re-iterable of batches (tf.data.Dataset, torch DataLoader), got "
            f"{type(data).__name__}."
        ) from None
    if is_iterator:
        raise TypeError(
            "data: an iterator or generator can be read once, and the "
            "statistics take one pass per layer; pass arrays, a "
            "tf.data.Dataset, a torch DataLoader or another re-iterable."
        )
    try:
        steps = len(data)
    except TypeError:
        steps = None

    def iterate():
        for batch in data:
            # (x, y) and (x, y, sample_weight) batches, as fit() takes them.
            yield keras.utils.unpack_x_y_sample_weight(batch)[0]

    return iterate, steps


def _inference_context():
    """No autograd graph for the forward passes (PyTorch's, from
    ``_backend``); nothing to switch off elsewhere."""
    context = replacement("inference_context")
    return contextlib.nullcontext() if context is None else context()


def _keras_bn_layers(layer):
    """``layer`` and every keras_bn layer inside it, through ``layers`` of
    nested models (the public list; a custom non-Model layer has none)."""
    if isinstance(layer, BatchNormalization):
        yield layer
    if isinstance(layer, keras.Model):
        for inner in layer.layers:
            yield from _keras_bn_layers(inner)


def recompute_statistics(
    model: keras.layers.Layer, data: Any, *, batch_size: int = 32, verbose: int = 1
) -> None:
    """Recomputes every keras_bn layer's running estimates from data.

    Each `keras_bn.BatchNormalization` in ``model`` (nested layers and
    models included, both modes) gets the population statistics of the
    inputs it actually sees when the model runs in inference mode on
    ``data``:

    - ``running_mean``: the mean over every value of every batch (the
      cumulative average of the batch means, weighted by their sizes);
    - ``running_std = sqrt(variance + epsilon)``, the seed's std, from the
      variance over every value of every batch, pooled exactly (within and
      between batches), not an average of per-batch stds, which would
      leave out the spread between batch means and depend on the batch size.

    The statistics run over the layer's reduction axes (the batch axis, and
    every axis not in ``axis``), leaving out masked positions as training
    does. A layer's inputs depend on the estimates of the keras_bn layers
    before it, so the layers are done one at a time, in the order the model
    calls them, each over the whole data: one pass per layer. A shared layer
    pools the inputs of all its calls. Layers the model never calls keep
    their estimates, with a warning.

    The inputs come from each layer's `BatchNormalization.record_inputs`;
    the layers are found through ``model.layers``, recursively into nested
    models (layers inside a custom, non-Model layer are not reached). The
    model runs eagerly (not compiled), in inference mode. Nothing else
    in the model changes; if anything fails, every layer gets its old
    estimates back.

    Args:
        model: A Keras model (or layer) containing keras_bn layers.
        data: The model's inputs: an array, a list/tuple/dict of arrays (cut
            into batches of ``batch_size``), or a re-iterable of batches
            (``tf.data.Dataset``, ``torch.utils.data.DataLoader``, ...), each
            the inputs or an ``(x, y)`` / ``(x, y, sample_weight)`` tuple.
        batch_size: Samples per batch for array data. The result does not
            depend on it (beyond rounding).
        verbose: 1 for a progress bar, 0 for none.
    """
    batch_size = _validation.integer(
        "batch_size", batch_size, expected="a positive int", minimum=1
    )
    _validation.one_of("verbose", verbose, (0, 1), expected="0 or 1")
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model: expected a Keras model, got {type(model).__name__}.")
    # A layer reached twice (shared between nested models) is done once.
    layers = list(dict.fromkeys(_keras_bn_layers(model)))
    if not layers:
        raise ValueError(
            f"model: '{model.name}' contains no keras_bn.BatchNormalization layer."
        )
    iterate, steps = _batches(data, batch_size)
    first = next(iter(iterate()), None)
    if first is None:
        raise ValueError("data: expected at least one batch, got none.")
    called = _pool_layer_by_layer(model, layers, first, iterate, steps, verbose)
    never_called = [layer.name for layer in layers if layer not in called]
    if never_called:
        warnings.warn(
            f"recompute_statistics: the model never called the keras_bn layers "
            f"{never_called}; their running estimates are unchanged.",
            UserWarning,
            stacklevel=2,
        )


def _pool_layer_by_layer(model, layers, first, iterate, steps, verbose):
    """Recomputes each of ``layers`` that the model calls, in call order;
    returns them in that order. Restores every estimate on failure."""
    called = []
    current = {"layer": None, "moments": None}

    def recorder(layer):
        def record(x, mask):
            if layer not in called:
                called.append(layer)
            if layer is current["layer"]:
                current["moments"].add(
                    ops.convert_to_numpy(x),
                    layer.reduction_axes,
                    None if mask is None else ops.convert_to_numpy(mask),
                )

        return record

    previous = []
    with contextlib.ExitStack() as recording, _inference_context():
        for layer in layers:
            recording.enter_context(layer.record_inputs(recorder(layer)))
        try:
            # One batch tells the order in which the model calls the layers
            # (and builds them, where the model was not built).
            model(first, training=False)
            previous = [
                (variable, variable.numpy())
                for layer in called
                for variable in _estimates(layer)
            ]
            progress = keras.utils.Progbar(
                None if steps is None else steps * len(called),
                verbose=verbose,
                unit_name="batch",
            )
            done = 0
            for layer in list(called):
                current["layer"], current["moments"] = layer, _PooledMoments()
                for batch in iterate():
                    model(batch, training=False)
                    done += 1
                    progress.update(done)
                _assign(layer, current["moments"])
            if steps is None:
                # A known target finishes the bar by itself.
                progress.update(done, finalize=True)
        except Exception:
            for variable, value in previous:
                variable.assign(value)
            raise
    return called


def _estimates(layer):
    """The layer's estimates of the population statistics, mean then std
    for each pair: the running ones, and renorm's own where it keeps them
    (they estimate the same statistics, at another rate)."""
    if layer.renorm_momentum is None:
        return [layer.running_mean, layer.running_std]
    return [layer.running_mean, layer.running_std, layer.renorm_mean, layer.renorm_std]


def _assign(layer, moments):
    shape = tuple(layer.running_mean.shape)
    seen = np.reshape(moments.count, shape) > 0
    mean = np.reshape(moments.mean, shape)
    std = functional.std_from_variance(
        np.reshape(moments.variance(), shape), layer.epsilon, 0.0
    )
    if not (np.all(np.isfinite(mean[seen])) and np.all(np.isfinite(std[seen]))):
        raise ValueError(
            f"data: the inputs of layer '{layer.name}' hold non-finite values; "
            "its statistics would be NaN or infinite."
        )
    # Features masked out everywhere keep their estimates.
    estimates = _estimates(layer)
    for variable, value in zip(estimates, [mean, std] * (len(estimates) // 2)):
        variable.assign(np.where(seen, value, variable.numpy()))
