"""Folding Batch Normalization into the preceding Dense or convolution.

At inference a Batch Normalization is an affine map, ``y = x * scale +
offset`` (`functional.inference_scale_offset`). When it directly follows a
`Dense` or `Conv1D/2D/3D` layer without an activation, and the map depends
on the output channel alone, it can be folded into that layer:
``kernel' = kernel * scale`` over the output channels and
``bias' = bias * scale + offset``. The folded model computes the same
predictions with one layer fewer per folded Batch Normalization.
"""

import dataclasses
from typing import Literal, overload

import keras
import numpy as np

from keras_bn import _validation, functional
from keras_bn.batch_normalization import BatchNormalization

__all__ = ["FoldReport", "fold_batchnorm"]

_PRODUCERS = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)
_BATCH_NORMALIZATIONS = (BatchNormalization, keras.layers.BatchNormalization)


@dataclasses.dataclass(frozen=True)
class FoldReport:
    """What `fold_batchnorm` did, by layer name.

    Attributes:
        folded: Batch Normalization name -> the layer it was folded into.
        unfolded: Batch Normalization name -> why it was left as it is.
    """

    folded: dict[str, str]
    unfolded: dict[str, str]


@overload
def fold_batchnorm(
    model: keras.Model, *, return_report: Literal[False] = False
) -> keras.Model: ...
@overload
def fold_batchnorm(
    model: keras.Model, *, return_report: Literal[True]
) -> tuple[keras.Model, FoldReport]: ...
def fold_batchnorm(
    model: keras.Model, *, return_report: bool = False
) -> keras.Model | tuple[keras.Model, FoldReport]:
    """An inference copy of ``model`` with its Batch Normalizations folded.

    Every `keras_bn.BatchNormalization` (mode 0) and
    `keras.layers.BatchNormalization` that directly follows a `Dense` or
    `Conv1D/2D/3D` layer is folded into that layer's kernel and bias (a
    layer built with ``use_bias=False`` gets a bias), provided that:

    - the layer has no activation of its own (linear);
    - its output goes to the Batch Normalization only;
    - neither is called more than once in the model;
    - the normalization's scale and offset depend on the output channel
      alone: statistics per channel (``axis=-1`` channels-last, ``axis=1``
      channels-first), or per-activation statistics (``axis=None``) after a
      `Dense` with rank-2 output, or whose values happen to be equal across
      the other positions.

    Every other Batch Normalization is left as it is, and listed with the
    reason: mode 1 layers (each sample normalizes with its own statistics),
    ones after other layers or after an activation, and ones inside nested
    models (which are copied whole).

    The copy is for inference: without its Batch Normalizations, it does not
    train as the original does. The original model is not changed.

    Args:
        model: A built `keras.Sequential` or functional `keras.Model`.
        return_report: If true, also return a `FoldReport`.

    Returns:
        The folded model (a `keras.Sequential` for a Sequential model, else
        a functional model with the original's inputs and outputs), or
        ``(model, report)`` with ``return_report=True``.
    """
    return_report = _validation.flag("return_report", return_report)
    sequential = _check_model(model)
    folds, unfolded = {}, {}
    for batch_norm, producer, problem in _batch_norm_links(model, sequential):
        if problem is None:
            problem = _fold_problem(batch_norm, producer)
        if problem is None:
            channel_affine = _channel_affine(batch_norm, producer)
            if isinstance(channel_affine, str):
                problem = channel_affine
            else:
                folds[id(batch_norm)] = (batch_norm, producer, *channel_affine)
        if problem is not None:
            unfolded[batch_norm.name] = problem
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for inner in _nested_batch_norms(layer):
                unfolded[inner.name] = (
                    f"inside the nested model '{layer.name}', which is copied as it is"
                )

    folded_model = _rebuild(model, sequential, folds)
    report = FoldReport(
        folded={bn.name: producer.name for bn, producer, _, _ in folds.values()},
        unfolded=unfolded,
    )
    return (folded_model, report) if return_report else folded_model


def _check_model(model):
    """Whether ``model`` is a Sequential; raises for what cannot be folded."""
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ValueError(
                f"model: the Sequential model '{model.name}' must be built with "
                "a known input (start it with keras.Input, or call it once)."
            )
        return True
    if _graph_nodes(model) is None:
        raise TypeError(
            "model: expected a Sequential or functional keras.Model, got "
            f"{type(model).__name__} (subclassed models have no layer graph "
            "to fold)."
        )
    return False


def _graph_nodes(model):
    """The nodes of a functional model's layer graph, or None for anything
    else (a subclassed model has no graph).

    The one use of Keras internals in keras_bn: Keras 3 has no public graph
    API, and folding needs to know which layer feeds which. A functional
    model's nodes are in ``_nodes_by_depth``, which
    ``keras.models.clone_model`` walks too."""
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        return None
    return [
        node
        for depth in model._nodes_by_depth.values()
        for node in depth
        if node.operation is not None
    ]


def _batch_norm_links(model, sequential):
    """``(batch_norm, producer, problem)`` for each Batch Normalization of
    ``model``'s own graph: the layer whose output it normalizes (or None),
    and why the graph's shape forbids folding (or None)."""
    if sequential:
        layers = model.layers
        for index, layer in enumerate(layers):
            if not isinstance(layer, _BATCH_NORMALIZATIONS):
                continue
            producer = layers[index - 1] if index else None
            problem = None
            if producer is None:
                problem = "it normalizes the model's input"
            elif layers.count(layer) > 1 or layers.count(producer) > 1:
                problem = f"'{producer.name}' or it is used more than once"
            yield layer, producer, problem
        return

    nodes = _graph_nodes(model)
    producer_nodes = {id(t): node for node in nodes for t in node.outputs}
    consumers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    for tensor in model.outputs:
        consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    calls = {}
    for node in nodes:
        if not node.is_input:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1

    for node in nodes:
        layer = node.operation
        if node.is_input or not isinstance(layer, _BATCH_NORMALIZATIONS):
            continue
        # The normalized tensor; a mask, when passed, comes after it.
        tensor = node.input_tensors[0]
        source = producer_nodes[id(tensor)]
        producer = None if source.is_input else source.operation
        problem = None
        if producer is None:
            problem = "it normalizes the model's input"
        elif calls[id(layer)] > 1 or calls[id(producer)] > 1:
            problem = f"'{producer.name}' or it is called more than once"
        elif consumers[id(tensor)] > 1:
            problem = (
                f"the output of '{producer.name}' also goes elsewhere, which "
                "folding would change"
            )
        yield layer, producer, problem


def _fold_problem(batch_norm, producer):
    """Why ``batch_norm`` cannot fold into ``producer``, or None."""
    if isinstance(batch_norm, BatchNormalization) and batch_norm.mode == 1:
        return (
            "mode 1 (samplewise) normalizes each sample with its own "
            "statistics, which no kernel can hold"
        )
    if isinstance(batch_norm, BatchNormalization) and batch_norm.mode == 2:
        return (
            "mode 2 normalizes with each batch's own statistics at inference "
            "too, which no kernel can hold"
        )
    if not isinstance(producer, _PRODUCERS):
        return (
            f"it follows '{producer.name}' ({type(producer).__name__}), not a "
            "Dense or Conv1D/2D/3D layer"
        )
    if producer.activation is not keras.activations.linear:
        return (
            f"'{producer.name}' applies its activation "
            f"({producer.activation.__name__}) before the normalization"
        )
    if getattr(producer, "lora_enabled", False):
        return f"'{producer.name}' has LoRA weights"
    if producer.dtype_policy.quantization_mode is not None:
        return f"'{producer.name}' is quantized"
    return None


def _channel_affine(batch_norm, producer):
    """Per-output-channel ``(scale, offset)`` of ``batch_norm`` at
    inference, as float64 vectors; or, where they vary over the other
    positions of ``producer``'s output, the reason as a string."""
    output_shape = tuple(producer.output.shape)
    rank = len(output_shape)
    if isinstance(batch_norm, BatchNormalization):
        feature_axes = list(batch_norm.feature_axes(rank))
        mean = _array(batch_norm.running_mean)
        running_std = _array(batch_norm.running_std)
    else:
        feature_axes = [batch_norm.axis % rank]
        mean = _array(batch_norm.moving_mean)
        # With the stock epsilon on both sides, the seed form equals the
        # variance form: rs + e == sqrt(mv + e).
        running_std = functional.std_from_variance(
            _array(batch_norm.moving_variance),
            batch_norm.epsilon,
            batch_norm.epsilon,
        )
    gamma = _array(batch_norm.gamma) if batch_norm.scale else 1.0
    beta = _array(batch_norm.beta) if batch_norm.center else 0.0
    scale, offset = functional.inference_scale_offset(
        gamma, beta, mean, running_std, batch_norm.epsilon
    )

    channels_first = getattr(producer, "data_format", None) == "channels_first"
    channel_axis = 1 if channels_first else rank - 1
    if feature_axes == [channel_axis]:
        return scale.reshape(-1), offset.reshape(-1)
    sample_shape = output_shape[1:]
    if None in sample_shape:
        return (
            "its weights are per position, and the output shape of "
            f"'{producer.name}', {output_shape}, is not fully known"
        )
    # The weights over one sample's whole output, one row per position.
    layout = [output_shape[a] if a in feature_axes else 1 for a in range(rank)]
    rows = []
    for weights in (scale, offset):
        whole = np.broadcast_to(weights.reshape(layout), (1, *sample_shape))
        rows.append(
            np.moveaxis(whole, channel_axis, -1).reshape(-1, output_shape[channel_axis])
        )
    if not all(np.all(r == r[:1]) for r in rows):
        return (
            "its per-activation weights differ across the positions of "
            f"'{producer.name}''s output {output_shape}, and a kernel holds one "
            "scale per output channel"
        )
    return rows[0][0], rows[1][0]


def _array(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), "float64")


def _nested_batch_norms(model):
    for layer in model.layers:
        if isinstance(layer, _BATCH_NORMALIZATIONS):
            yield layer
        elif isinstance(layer, keras.Model):
            yield from _nested_batch_norms(layer)


def _rebuild(model, sequential, folds):
    """A copy of ``model`` without the folded Batch Normalizations, with the
    layers they followed carrying the folded kernels and biases."""
    removed = set(folds)
    folded_weights = {}
    for _, producer, scale, offset in folds.values():
        kernel = _array(producer.kernel)
        bias = _array(producer.bias) if producer.use_bias else 0.0
        # The output channel is the kernel's last axis, for Dense and for
        # every convolution (whatever its data_format).
        folded_weights[id(producer)] = [kernel * scale, bias * scale + offset]

    clones = {}

    def clone(layer):
        if id(layer) not in clones:
            config = layer.get_config()
            if id(layer) in folded_weights:
                config["use_bias"] = True
            clones[id(layer)] = (layer, layer.__class__.from_config(config))
        return clones[id(layer)][1]

    if sequential:
        source = model.inputs[0]
        copy = keras.Sequential(
            [keras.Input(batch_shape=tuple(source.shape), dtype=source.dtype)]
            + [clone(layer) for layer in model.layers if id(layer) not in removed],
            name=model.name,
        )
    else:

        def clone_function(layer):
            # A folded Batch Normalization is never called (call_function
            # passes its input through), so it needs no copy.
            return layer if id(layer) in removed else clone(layer)

        def call_function(layer, *args, **kwargs):
            if id(layer) in removed:
                return args[0]
            return layer(*args, **kwargs)

        copy = keras.models.clone_model(
            model, clone_function=clone_function, call_function=call_function
        )

    for original, new in clones.values():
        weights = folded_weights.get(id(original), original.get_weights())
        new.set_weights(
            [np.asarray(w).astype(v.dtype) for w, v in zip(weights, new.weights)]
        )
    return copy
