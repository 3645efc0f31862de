"""Old Keras layers (0.x, 1.x and 2.x names and arguments) as Keras 3 layers.

`translate` turns one `architecture.Node` into a `Plan`: the Keras 3
layer's class and arguments, or the problems (unsupported layer or
argument) that stop the rebuild. Arguments that only mattered for training
(initializers, regularizers, constraints) are dropped; every other argument
must be understood or it is reported.

Each family of layers has one small translator, registered under every old
class name it reads (`_TRANSLATORS`); a name not registered is refused.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import keras

from keras_bn.batch_normalization import BatchNormalization
from keras_bn.legacy.activations import OLD_MEANINGS
from keras_bn.legacy.architecture import Node
from keras_bn.legacy.errors import short_repr as _short

__all__ = ["Plan", "translate"]

_TRAINING_ONLY = {
    "name", "trainable", "init", "kernel_initializer", "bias_initializer",
    "W_regularizer", "b_regularizer", "activity_regularizer", "W_constraint",
    "b_constraint", "kernel_regularizer", "bias_regularizer",
    "kernel_constraint", "bias_constraint", "input_dim", "input_shape",
    "batch_input_shape", "input_dtype", "dtype", "input_length",
    "cache_enabled", "custom_name", "target", "beta", "batch_size",
    "gamma_init", "beta_init", "gamma_regularizer", "beta_regularizer",
    "gamma_constraint", "beta_constraint", "beta_initializer",
    "gamma_initializer", "moving_mean_initializer",
    "moving_variance_initializer", "embeddings_initializer",
    "embeddings_regularizer", "embeddings_constraint", "dropout", "seed",
    "noise_shape", "output_shape", "output_shape_type", "dot_axes",
    "mode_type", "arguments", "build_config", "module", "registered_name",
    "momentum", "weights", "output_mask_type", "output_mask",
    # recurrent and separable layers' training-time arguments
    "inner_init", "forget_bias_init", "U_regularizer", "dropout_W",
    "dropout_U", "recurrent_initializer", "recurrent_regularizer",
    "recurrent_constraint", "recurrent_dropout", "unit_forget_bias",
    "implementation", "unroll", "depthwise_initializer",
    "pointwise_initializer", "depthwise_regularizer", "pointwise_regularizer",
    "depthwise_constraint", "pointwise_constraint", "alpha_initializer",
    "alpha_regularizer", "alpha_constraint", "depthwise_init",
    "pointwise_init", "consume_less",
}  # fmt: skip
# Layers that Keras 3 runs channels-first natively on JAX and PyTorch, but
# TensorFlow's CPU kernels do not: wrapped between two Permutes there.
_CHANNELS_FIRST_WRAPPED = (
    "Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D",
    "DepthwiseConv2D", "Conv2DTranspose", "Conv3DTranspose", "MaxPooling1D",
    "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "ConvLSTM2D",
)  # fmt: skip


@dataclasses.dataclass
class Plan:
    """cls: the Keras 3 layer class; kwargs: its arguments (a `Plan` among
    them is a wrapped layer, built with it); problems: ``[(field,
    message)]``; channels_first: the layer computes channels-first
    (TensorFlow's CPU runs it between Permutes); per_activation_bn: a stock
    BN whose old statistics were per activation; output_shape: the sample
    shape the old layer declared (checked once built); substitute: the
    layer the caller supplied in its place (then ``cls`` and ``kwargs`` are
    unused)."""

    cls: type | None = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    problems: list = dataclasses.field(default_factory=list)
    channels_first: bool = False
    per_activation_bn: bool = False
    output_shape: tuple | None = None
    substitute: object = None

    def build(self, **overrides):
        """The Keras 3 layer, wrapped layers built too."""
        kwargs = {
            key: value.build() if isinstance(value, Plan) else value
            for key, value in dict(self.kwargs, **overrides).items()
        }
        return self.cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class _Context:
    """class_name: the old class; generation: 0, 1 or 2; target: "keras_bn"
    or "keras"; dim_ordering: "th" or "tf", for Keras 1.x layers that did
    not record theirs (the caller's, else the one the model's other layers
    record), or None."""

    class_name: str
    generation: int
    target: str
    dim_ordering: str | None = None


class _Args:
    def __init__(self, config, plan):
        self.config, self.used, self.plan = config, set(), plan

    def get(self, *keys, default=None):
        for key in keys:
            self.used.add(key)
        for key in keys:
            if key in self.config and self.config[key] is not None:
                return self.config[key]
        return default

    def refuse(self, field, message):
        self.plan.problems.append((field, message))

    def leftover(self):
        for key, value in self.config.items():
            if key in self.used or key in _TRAINING_ONLY:
                continue
            if _is_empty(value) and key not in ("bias", "use_bias"):
                continue
            self.refuse(key, f"argument {key}={_short(value)} is not supported")


def _is_empty(value):
    return (
        value is None
        or value is False
        or (isinstance(value, (dict, list, tuple)) and not value)
    )


_TRANSLATORS: dict[str, Callable[..., Any]] = {}


def _translates(*class_names):
    """Registers a translator ``(args, plan, context)`` under old class
    names."""

    def register(function):
        for name in class_names:
            _TRANSLATORS[name] = function
        return function

    return register


# -- shared argument readers --


def _tuple(value, rank):
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,) * rank


def _activation(a, key="activation", default="linear"):
    """An activation's name (old files store names only: a serialized
    object is refused, never deserialized)."""
    name = a.get(key, default=default)
    if isinstance(name, str) and name in OLD_MEANINGS:
        return OLD_MEANINGS[name]
    try:
        if not isinstance(name, str):
            raise TypeError
        keras.activations.get(name)
    except (ValueError, TypeError):
        a.refuse(key, f"activation {_short(name)} is unknown to Keras 3")
        return "linear"
    return name


def _padding(a, default="valid"):
    value = a.get("border_mode", "padding", default=default)
    if value not in ("valid", "same"):
        a.refuse(
            "border_mode",
            f"border_mode/padding {_short(value)} (expected 'valid' or 'same')",
        )
        return default
    return value


_ORDERINGS = {"th": "channels_first", "tf": "channels_last"}


def _data_format(a, context, rank):
    """channels_first or channels_last; Keras 0.x/1.x's ``dim_ordering``
    ('th' was the 0.x default); 1D layers were channels-last. Keras 1.x's
    UpSampling, ZeroPadding and Cropping layers did not record theirs (it
    was keras.json's): the model's is used, and without one they are
    refused."""
    ordering = a.get("dim_ordering")
    if rank == 1:
        value = a.get("data_format", default="channels_last")
    elif ordering is not None:
        value = _ORDERINGS.get(ordering if isinstance(ordering, str) else None)
        if value is None:
            a.refuse(
                "dim_ordering",
                f"dim_ordering {_short(ordering)} (expected 'th' or 'tf')",
            )
    elif a.get("data_format") is not None or context.generation >= 2:
        value = a.get("data_format", default="channels_last")
    elif context.generation == 0:
        value = "channels_first"
    else:
        value = _ORDERINGS.get(context.dim_ordering)
        if value is None:
            a.refuse(
                "dim_ordering",
                "Keras 1.x did not record this layer's dim_ordering (it was "
                "keras.json's image_dim_ordering) and no other layer of the "
                "model records one: pass dim_ordering='th' or dim_ordering='tf'",
            )
    if value not in ("channels_first", "channels_last"):
        if value is not None:
            a.refuse("data_format", f"data_format {_short(value)}")
        value = "channels_last"
    a.plan.channels_first = value == "channels_first"
    return value


def _is_finite_number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _use_bias(a):
    return bool(a.get("bias", "use_bias", default=True))


# -- core --


@_translates("Dense", "TimeDistributedDense")
def _dense(a, plan, context):
    # Keras 1's TimeDistributedDense is a Dense on the last axis.
    plan.cls = keras.layers.Dense
    plan.kwargs = dict(
        units=a.get("output_dim", "units"),
        activation=_activation(a),
        use_bias=_use_bias(a),
    )


@_translates("Activation")
def _activation_layer(a, plan, context):
    plan.cls, plan.kwargs = keras.layers.Activation, dict(activation=_activation(a))


@_translates("Flatten")
def _flatten(a, plan, context):
    fmt = a.get("data_format", default="channels_last")
    plan.cls, plan.kwargs = keras.layers.Flatten, dict(data_format=fmt)


@_translates("Reshape")
def _reshape(a, plan, context):
    shape = a.get("target_shape", "dims")
    plan.cls = keras.layers.Reshape
    plan.kwargs = dict(target_shape=tuple(shape or ()))


@_translates("Permute")
def _permute(a, plan, context):
    plan.cls, plan.kwargs = keras.layers.Permute, dict(dims=tuple(a.get("dims") or ()))


@_translates("RepeatVector")
def _repeat_vector(a, plan, context):
    plan.cls, plan.kwargs = keras.layers.RepeatVector, dict(n=a.get("n"))


@_translates("Masking")
def _masking(a, plan, context):
    value = a.get("mask_value", default=0.0)
    plan.cls, plan.kwargs = keras.layers.Masking, dict(mask_value=value)


@_translates("Embedding")
def _embedding(a, plan, context):
    plan.cls = keras.layers.Embedding
    plan.kwargs = dict(
        input_dim=a.get("input_dim"),
        output_dim=a.get("output_dim"),
        mask_zero=bool(a.get("mask_zero", default=False)),
    )


# -- inference no-ops: noise, dropout, activity regularization --


@_translates(
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianDropout", "AlphaDropout",
)  # fmt: skip
def _dropout(a, plan, context):
    plan.cls = getattr(keras.layers, context.class_name)
    plan.kwargs = dict(rate=a.get("p", "rate", default=0.0))
    a.get("dim_ordering", "data_format")  # no effect at inference


@_translates("GaussianNoise")
def _gaussian_noise(a, plan, context):
    plan.cls = keras.layers.GaussianNoise
    plan.kwargs = dict(stddev=a.get("sigma", "stddev", default=0.0))


@_translates("ActivityRegularization")
def _activity_regularization(a, plan, context):
    plan.cls = keras.layers.ActivityRegularization
    plan.kwargs = dict(l1=a.get("l1", default=0.0), l2=a.get("l2", default=0.0))


# -- advanced activations --


@_translates("LeakyReLU")
def _leaky_relu(a, plan, context):
    slope = a.get("alpha", "negative_slope", default=0.3)
    plan.cls, plan.kwargs = keras.layers.LeakyReLU, dict(negative_slope=slope)


@_translates("ELU")
def _elu(a, plan, context):
    plan.cls, plan.kwargs = keras.layers.ELU, dict(alpha=a.get("alpha", default=1.0))


@_translates("ThresholdedReLU")
def _thresholded_relu(a, plan, context):
    # x where x > theta, else 0: Keras 3's ReLU with that threshold (they
    # differ only at x == theta exactly).
    plan.cls = keras.layers.ReLU
    plan.kwargs = dict(threshold=a.get("theta", default=1.0))


@_translates("ReLU")
def _relu(a, plan, context):
    plan.cls = keras.layers.ReLU
    plan.kwargs = dict(
        max_value=a.get("max_value"),
        negative_slope=a.get("negative_slope", default=0.0),
        threshold=a.get("threshold", default=0.0),
    )


@_translates("Softmax")
def _softmax(a, plan, context):
    plan.cls, plan.kwargs = keras.layers.Softmax, dict(axis=a.get("axis", default=-1))


@_translates("PReLU")
def _prelu(a, plan, context):
    plan.cls = keras.layers.PReLU
    plan.kwargs = dict(shared_axes=a.get("shared_axes"))


# -- convolutions --

_CONVOLUTIONS = {
    # old class name: (Keras 3 class, rank)
    "Convolution1D": ("Conv1D", 1), "Conv1D": ("Conv1D", 1),
    "AtrousConvolution1D": ("Conv1D", 1),
    "Convolution2D": ("Conv2D", 2), "Conv2D": ("Conv2D", 2),
    "AtrousConvolution2D": ("Conv2D", 2),
    "Convolution3D": ("Conv3D", 3), "Conv3D": ("Conv3D", 3),
    "SeparableConvolution2D": ("SeparableConv2D", 2),
    "SeparableConv2D": ("SeparableConv2D", 2),
    "SeparableConv1D": ("SeparableConv1D", 1),
    "DepthwiseConv2D": ("DepthwiseConv2D", 2),
    "Deconvolution2D": ("Conv2DTranspose", 2),
    "Conv2DTranspose": ("Conv2DTranspose", 2),
    "Deconvolution3D": ("Conv3DTranspose", 3),
    "Conv3DTranspose": ("Conv3DTranspose", 3),
}  # fmt: skip


def _kernel_size(a, rank):
    if rank == 1:
        return _tuple(a.get("filter_length", "kernel_size"), 1)
    old = ("nb_row", "nb_col") if rank == 2 else (
        "kernel_dim1", "kernel_dim2", "kernel_dim3"
    )  # fmt: skip
    sizes = [a.get(key) for key in old]
    if all(size is not None for size in sizes):
        return tuple(sizes)
    return _tuple(a.get("kernel_size"), rank)


@_translates(*_CONVOLUTIONS)
def _convolution(a, plan, context):
    class_name, rank = _CONVOLUTIONS[context.class_name]
    plan.cls = getattr(keras.layers, class_name)
    strides = a.get("subsample_length", "subsample", "strides", default=1)
    dilation = a.get("atrous_rate", "dilation_rate", default=1)
    if a.get("groups", default=1) != 1:
        a.refuse("groups", f"groups={_short(a.config['groups'])} (grouped convolution)")
    kwargs = dict(
        kernel_size=_kernel_size(a, rank), strides=_tuple(strides, rank),
        padding=_padding(a), data_format=_data_format(a, context, rank),
        activation=_activation(a), use_bias=_use_bias(a),
    )  # fmt: skip
    if class_name != "DepthwiseConv2D":
        kwargs["filters"] = a.get("nb_filter", "filters")
    if "Separable" in class_name or class_name == "DepthwiseConv2D":
        kwargs["depth_multiplier"] = a.get("depth_multiplier", default=1)
    if "Transpose" in class_name:
        if a.get("output_padding") is not None:
            kwargs["output_padding"] = a.get("output_padding")
        shape = a.get("output_shape")
        if isinstance(shape, (list, tuple)) and len(shape) == rank + 2:
            plan.output_shape = tuple(shape[1:])
    if set(_tuple(dilation, rank)) != {1}:
        if "Transpose" in class_name or "Separable" in class_name:
            a.refuse("dilation_rate", f"dilation_rate {_short(dilation)}")
        kwargs["dilation_rate"] = _tuple(dilation, rank)
    plan.kwargs = kwargs


# -- pooling, padding, cropping, upsampling --


def _rank(class_name):
    return int(class_name[-2])


@_translates(
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
)  # fmt: skip
def _pooling(a, plan, context):
    rank = _rank(context.class_name)
    plan.cls = getattr(keras.layers, context.class_name)
    size = _tuple(a.get("pool_length", "pool_size", default=2), rank)
    strides = a.get("stride", "strides", default=None)
    if a.get("ignore_border", default=True) is not True:
        a.refuse("ignore_border", "ignore_border=False (Theano's partial windows)")
    plan.kwargs = dict(
        pool_size=size,
        strides=size if strides is None else _tuple(strides, rank),
        padding=_padding(a),
        data_format=_data_format(a, context, rank),
    )


@_translates(
    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling3D",
)  # fmt: skip
def _global_pooling(a, plan, context):
    plan.cls = getattr(keras.layers, context.class_name)
    plan.kwargs = dict(data_format=_data_format(a, context, _rank(context.class_name)))
    plan.channels_first = False  # a reduction runs channels-first everywhere


def _pairs(value, rank, name, a):
    """``((before, after), ...)`` per spatial axis, from an int, one int per
    axis, pairs, or Keras 1.2's 2D ``(top, bottom, left, right)``."""
    if isinstance(value, dict):  # Keras 1.2's {"top_pad": ...} form
        keys = ("top_pad", "bottom_pad", "left_pad", "right_pad")
        value = [value.get(key, 0) for key in keys]
    if rank == 2 and isinstance(value, (list, tuple)) and len(value) == 4:
        value = ((value[0], value[1]), (value[2], value[3]))
    if rank == 1:
        return _tuple(value, 2)
    if not isinstance(value, (list, tuple)):
        value = (value,) * rank
    if len(value) != rank:
        a.refuse(name, f"{name} {_short(value)} (expected {rank} entries)")
        return ((0, 0),) * rank
    return tuple(_tuple(item, 2) for item in value)


@_translates(
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D",
)  # fmt: skip
def _pad_or_crop(a, plan, context):
    rank = _rank(context.class_name)
    key = "padding" if context.class_name.startswith("ZeroPadding") else "cropping"
    plan.cls = getattr(keras.layers, context.class_name)
    plan.kwargs = {key: _pairs(a.get(key, default=1), rank, key, a)}
    if rank > 1:
        plan.kwargs["data_format"] = _data_format(a, context, rank)
    plan.channels_first = False  # a pad or a crop runs channels-first everywhere


@_translates("UpSampling1D", "UpSampling2D", "UpSampling3D")
def _upsampling(a, plan, context):
    rank = _rank(context.class_name)
    plan.cls = getattr(keras.layers, context.class_name)
    size = a.get("length", "size", default=2)
    if rank == 1:
        plan.kwargs = dict(size=size)
        return
    plan.kwargs = dict(
        size=_tuple(size, rank), data_format=_data_format(a, context, rank)
    )
    interpolation = a.get("interpolation", default="nearest")
    if rank == 2:
        plan.kwargs["interpolation"] = interpolation
    elif interpolation != "nearest":
        a.refuse("interpolation", f"interpolation {_short(interpolation)}")
    plan.channels_first = False


# -- BatchNormalization and merges --


@_translates("BatchNormalization")
def _batch_norm(a, plan, context):
    generation = context.generation
    mode = a.get("mode", default=0)
    epsilon = a.get("epsilon", default=1e-3 if generation >= 2 else 1e-6)
    if not _is_finite_number(epsilon) or epsilon < 0:
        a.refuse("epsilon", f"epsilon {_short(epsilon)} (expected a number >= 0)")
        epsilon = 1e-3
    axis = a.get("axis", default=None if generation == 0 else -1)
    if isinstance(axis, (list, tuple)):
        axis = axis[0] if len(axis) == 1 else axis
        if isinstance(axis, (list, tuple)):
            a.refuse("axis", f"axis {_short(list(axis))} (several axes)")
    momentum = a.get("momentum", default=0.99 if generation >= 1 else 0.9)
    center = bool(a.get("center", default=True))
    scale = bool(a.get("scale", default=True))
    if mode not in (0, 1, 2):
        a.refuse("mode", f"mode {_short(mode)} (expected 0, 1 or 2)")
    common = dict(epsilon=epsilon, momentum=momentum, center=center, scale=scale)
    if context.target == "keras":
        if mode == 1:
            a.refuse("mode", "mode 1 (samplewise) needs batch_normalization='keras_bn'")
        if mode == 2:
            a.refuse(
                "mode",
                "mode 2 (batch statistics at inference too) needs "
                "batch_normalization='keras_bn'",
            )
        plan.cls = keras.layers.BatchNormalization
        plan.per_activation_bn = axis is None
        plan.kwargs = dict(common, axis=-1 if axis is None else axis)
        return
    plan.cls = BatchNormalization
    plan.kwargs = dict(common, mode=mode if mode in (0, 1, 2) else 0, axis=axis)
    if mode == 1:
        plan.kwargs["samplewise_epsilon_in_root"] = generation == 1


_MERGE_CLASSES = {"concat": "Concatenate", "sum": "Add", "mul": "Multiply",
                  "ave": "Average", "max": "Maximum"}  # fmt: skip
_MERGES = {"Merge": None, "Concatenate": "concat", "Add": "sum",
           "Multiply": "mul", "Average": "ave", "Maximum": "max"}  # fmt: skip


@_translates(*_MERGES)
def _merge(a, plan, context):
    mode = _MERGES[context.class_name]
    if mode is None:
        mode = a.get("mode", default="sum")
    # Keras 1 wrote concat_axis (-1 by default) whatever the mode: only a
    # concatenation reads it; another mode with another axis is refused.
    axis = a.get("concat_axis", "axis", default=-1)
    if (
        a.config.get("mode_type", "raw") != "raw"
        or not isinstance(mode, str)
        or mode not in _MERGE_CLASSES
    ):
        a.refuse(
            "mode",
            f"merge mode {_short(mode)} (expected one of {sorted(_MERGE_CLASSES)})",
        )
        return
    plan.cls = getattr(keras.layers, _MERGE_CLASSES[mode])
    if mode == "concat":
        plan.kwargs = dict(axis=axis)
    elif axis != -1:
        a.refuse("concat_axis", f"concat_axis={_short(axis)} with merge mode {mode!r}")


# -- recurrent layers and wrappers --


@_translates("SimpleRNN", "GRU", "LSTM")
def _recurrent(a, plan, context):
    name = context.class_name
    plan.cls = getattr(keras.layers, name)
    kwargs = dict(
        units=a.get("output_dim", "units"),
        activation=_activation(a, default="tanh"),
        use_bias=_use_bias(a),
        return_sequences=bool(a.get("return_sequences", default=False)),
        go_backwards=bool(a.get("go_backwards", default=False)),
    )
    if name != "SimpleRNN":
        # Keras 1 called it inner_activation; hard_sigmoid (0.2 x + 0.5) was
        # the default up to Keras 2.2.
        key = "inner_activation" if "inner_activation" in a.config else (
            "recurrent_activation"
        )  # fmt: skip
        kwargs["recurrent_activation"] = _activation(a, key, default="hard_sigmoid")
    if name == "GRU":
        kwargs["reset_after"] = bool(a.get("reset_after", default=False))
    _refuse_state(a)
    plan.kwargs = kwargs


@_translates("ConvLSTM2D")
def _conv_lstm(a, plan, context):
    plan.cls = keras.layers.ConvLSTM2D
    key = "inner_activation" if "inner_activation" in a.config else (
        "recurrent_activation"
    )  # fmt: skip
    plan.kwargs = dict(
        filters=a.get("nb_filter", "filters"), kernel_size=_kernel_size(a, 2),
        strides=_tuple(a.get("subsample", "strides", default=1), 2),
        padding=_padding(a), data_format=_data_format(a, context, 2),
        activation=_activation(a, default="tanh"),
        recurrent_activation=_activation(a, key, default="hard_sigmoid"),
        use_bias=_use_bias(a),
        return_sequences=bool(a.get("return_sequences", default=False)),
        go_backwards=bool(a.get("go_backwards", default=False)),
    )  # fmt: skip
    dilation = a.get("dilation_rate", default=1)
    if set(_tuple(dilation, 2)) != {1}:
        plan.kwargs["dilation_rate"] = _tuple(dilation, 2)
    _refuse_state(a)


@_translates("CuDNNGRU", "CuDNNLSTM")
def _cudnn_recurrent(a, plan, context):
    # What Keras 2.2 itself loaded them into: sigmoid gates, tanh, and for
    # the GRU reset_after (cuDNN's two biases).
    name = context.class_name.replace("CuDNN", "")
    plan.cls = getattr(keras.layers, name)
    plan.kwargs = dict(
        units=a.get("units"), activation="tanh", recurrent_activation="sigmoid",
        return_sequences=bool(a.get("return_sequences", default=False)),
        go_backwards=bool(a.get("go_backwards", default=False)),
    )  # fmt: skip
    if name == "GRU":
        plan.kwargs["reset_after"] = True
    _refuse_state(a)


def _refuse_state(a):
    if a.get("stateful", default=False):
        a.refuse("stateful", "stateful=True (state kept across batches)")
    if a.get("return_state", default=False):
        a.refuse("return_state", "return_state=True (several outputs)")
    if a.get("time_major", default=False):
        a.refuse("time_major", "time_major=True")


def _inner(a, plan, context):
    """The wrapped layer's `Plan`, its problems reported as the wrapper's."""
    inner = a.get("layer")
    if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
        a.refuse("layer", f"wrapped layer {_short(inner)}")
        return None
    config = dict(inner["config"])
    node = Node(str(config.get("name")), str(inner.get("class_name")), config, [])
    inner_plan = translate(
        node, context.generation, context.target, context.dim_ordering
    )
    for field, message in inner_plan.problems:
        a.refuse(f"layer.{field}", message)
    return inner_plan


@_translates("TimeDistributed")
def _time_distributed(a, plan, context):
    inner = _inner(a, plan, context)
    plan.cls, plan.kwargs = keras.layers.TimeDistributed, dict(layer=inner)


@_translates("Bidirectional")
def _bidirectional(a, plan, context):
    inner = _inner(a, plan, context)
    merge_mode = a.get("merge_mode", default="concat")
    if "merge_mode" in a.config and a.config["merge_mode"] is None:
        # Keras 2's merge_mode=None returned both directions as two outputs.
        a.refuse("merge_mode", "merge_mode=None (two outputs, not merged)")
    elif merge_mode not in ("concat", "sum", "mul", "ave"):
        a.refuse("merge_mode", f"merge_mode {_short(merge_mode)}")
    a.get("backward_layer")  # Keras 2.3's copy of the forward layer's config
    plan.cls = keras.layers.Bidirectional
    plan.kwargs = dict(layer=inner, merge_mode=merge_mode)


# --


def translate(node, generation, target, dim_ordering=None):
    """The `Plan` for one node; ``target``: "keras_bn" or "keras";
    ``dim_ordering``: see `_Context`."""
    plan = Plan()
    a = _Args(node.config, plan)
    name = node.class_name
    translator = _TRANSLATORS.get(name)
    if name == "Lambda":
        plan.problems.append(
            ("class_name", "a Lambda layer's stored code is never run")
        )
        return plan
    if translator is None:
        plan.problems.append(
            ("class_name", f"layer class {_short(name)} is not supported")
        )
        return plan
    translator(a, plan, _Context(name, generation, target, dim_ordering))
    a.leftover()
    if plan.problems:
        return plan
    if plan.channels_first and plan.cls.__name__ not in _CHANNELS_FIRST_WRAPPED:
        plan.channels_first = False
    return plan
