"""Old Keras layers (0.x, 1.x and 2.x names and arguments) as Keras 3 layers.

`translate` turns one `architecture.Node` into a `Plan`: the Keras 3
layer's class and arguments, or the problems (unsupported layer or
argument) that stop the rebuild. Arguments that only mattered for training
(initializers, regularizers, constraints) are dropped; every other argument
must be understood or it is reported.
"""

import dataclasses

import keras

from keras_bn.batch_normalization import BatchNormalization

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
}  # fmt: skip
_CHANNELS_FIRST_WRAPPED = ("Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D",
                           "AveragePooling1D", "AveragePooling2D")  # fmt: skip


@dataclasses.dataclass
class Plan:
    """cls: the Keras 3 layer class; kwargs: its arguments; problems:
    ``[(field, message)]``; channels_first: the layer computes
    channels-first (TensorFlow's CPU runs it between Permutes);
    per_activation_bn: a stock BN whose old statistics were per activation;
    substitute: the layer the caller supplied in its place (then ``cls`` and
    ``kwargs`` are unused)."""

    cls: type | None = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    problems: list = dataclasses.field(default_factory=list)
    channels_first: bool = False
    per_activation_bn: bool = False
    substitute: object = None


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
            if value in (None, False, {}, []) and key not in ("bias", "use_bias"):
                continue
            self.refuse(key, f"argument {key}={value!r} is not supported")


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _activation(a, plan):
    name = a.get("activation", default="linear")
    try:
        keras.activations.get(name)
    except (ValueError, TypeError):
        a.refuse("activation", f"activation {name!r} is unknown to Keras 3")
    return name


def _padding(a, default="valid"):
    value = a.get("border_mode", "padding", default=default)
    if value not in ("valid", "same"):
        a.refuse(
            "border_mode", f"border_mode/padding {value!r} (expected 'valid' or 'same')"
        )
    return value


def _data_format(a, generation, plan):
    ordering = a.get("dim_ordering")
    if ordering is not None:
        value = {"th": "channels_first", "tf": "channels_last"}.get(ordering)
        if value is None:
            a.refuse(
                "dim_ordering", f"dim_ordering {ordering!r} (expected 'th' or 'tf')"
            )
    else:
        default = "channels_first" if generation == 0 else "channels_last"
        value = a.get("data_format", default=default)
    plan.channels_first = value == "channels_first"
    return value


def _dense(a, plan, generation):
    plan.cls = keras.layers.Dense
    plan.kwargs = dict(
        units=a.get("output_dim", "units"),
        activation=_activation(a, plan),
        use_bias=bool(a.get("bias", "use_bias", default=True)),
    )


def _conv(a, plan, generation, rank):
    plan.cls = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
    if rank == 1:
        size = a.get("filter_length", "kernel_size")
        strides = a.get("subsample_length", "strides", default=1)
        fmt = a.get("data_format", default="channels_last")
        plan.channels_first = fmt == "channels_first"
    else:
        rows, cols = a.get("nb_row"), a.get("nb_col")
        size = (rows, cols) if rows is not None else _pair(a.get("kernel_size"))
        strides = _pair(a.get("subsample", "strides", default=(1, 1)))
        fmt = _data_format(a, generation, plan)
    if a.get("groups", default=1) != 1:
        a.refuse("groups", f"groups={a.config['groups']!r} (grouped convolution)")
    dilation = a.get("dilation_rate", "atrous_rate", default=1)
    if set(_pair(dilation)) != {1}:
        a.refuse("dilation_rate", f"dilation_rate {dilation!r} is not supported")
    plan.kwargs = dict(
        filters=a.get("nb_filter", "filters"), kernel_size=size, strides=strides,
        padding=_padding(a), data_format=fmt, activation=_activation(a, plan),
        use_bias=bool(a.get("bias", "use_bias", default=True)),
    )  # fmt: skip


def _pool(a, plan, generation, rank, kind):
    names = {("max", 1): "MaxPooling1D", ("max", 2): "MaxPooling2D",
             ("avg", 1): "AveragePooling1D",
             ("avg", 2): "AveragePooling2D"}  # fmt: skip
    plan.cls = getattr(keras.layers, names[kind, rank])
    if rank == 1:
        size = a.get("pool_length", "pool_size", default=2)
        strides = a.get("stride", "strides", default=None) or size
        fmt = a.get("data_format", default="channels_last")
        plan.channels_first = fmt == "channels_first"
    else:
        size = _pair(a.get("pool_size", default=(2, 2)))
        strides = _pair(a.get("stride", "strides", default=None) or size)
        fmt = _data_format(a, generation, plan)
    if a.get("ignore_border", default=True) is not True:
        a.refuse("ignore_border", "ignore_border=False (Theano's partial windows)")
    plan.kwargs = dict(
        pool_size=size, strides=strides, padding=_padding(a), data_format=fmt
    )


def _batch_norm(a, plan, generation, target):
    mode = a.get("mode", default=0)
    epsilon = a.get("epsilon", default=1e-3 if generation >= 2 else 1e-6)
    axis = a.get("axis", default=None if generation == 0 else -1)
    if isinstance(axis, (list, tuple)):
        axis = axis[0] if len(axis) == 1 else axis
        if isinstance(axis, (list, tuple)):
            a.refuse("axis", f"axis {list(axis)!r} (several axes)")
    momentum = a.get("momentum", default=0.99 if generation >= 1 else 0.9)
    center = bool(a.get("center", default=True))
    scale = bool(a.get("scale", default=True))
    if mode not in (0, 1, 2):
        a.refuse("mode", f"mode {mode!r} (expected 0, 1 or 2)")
    common = dict(epsilon=epsilon, momentum=momentum, center=center, scale=scale)
    if target == "keras":
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


def _merge(a, plan, generation, mode):
    if mode is None:
        mode = a.get("mode", default="sum")
    classes = {"concat": keras.layers.Concatenate, "sum": keras.layers.Add,
               "mul": keras.layers.Multiply, "ave": keras.layers.Average,
               "max": keras.layers.Maximum}  # fmt: skip
    # Keras 1 wrote concat_axis (-1 by default) whatever the mode: only a
    # concatenation reads it; another mode with another axis is refused.
    axis = a.get("concat_axis", "axis", default=-1)
    if (
        a.config.get("mode_type", "raw") != "raw"
        or not isinstance(mode, str)
        or mode not in classes
    ):
        a.refuse("mode", f"merge mode {mode!r} (expected one of {sorted(classes)})")
        return
    plan.cls = classes[mode]
    if mode == "concat":
        plan.kwargs = dict(axis=axis)
    elif axis != -1:
        a.refuse("concat_axis", f"concat_axis={axis!r} with merge mode {mode!r}")


def _simple(a, plan, generation, class_name):
    L = keras.layers
    if class_name == "Activation":
        plan.cls, plan.kwargs = L.Activation, dict(activation=_activation(a, plan))
    elif class_name == "Dropout":
        plan.cls, plan.kwargs = L.Dropout, dict(rate=a.get("p", "rate", default=0.0))
    elif class_name == "Flatten":
        fmt = a.get("data_format", default="channels_last")
        plan.cls, plan.kwargs = L.Flatten, dict(data_format=fmt)
    elif class_name == "Reshape":
        shape = a.get("target_shape", "dims")
        plan.cls, plan.kwargs = L.Reshape, dict(target_shape=tuple(shape or ()))
    elif class_name == "Permute":
        plan.cls, plan.kwargs = L.Permute, dict(dims=tuple(a.get("dims") or ()))
    elif class_name == "Embedding":
        plan.cls = L.Embedding
        plan.kwargs = dict(
            input_dim=a.get("input_dim"),
            output_dim=a.get("output_dim"),
            mask_zero=bool(a.get("mask_zero", default=False)),
        )
    elif class_name == "ZeroPadding1D":
        plan.cls, plan.kwargs = (
            L.ZeroPadding1D,
            dict(padding=a.get("padding", default=1)),
        )
    elif class_name == "ZeroPadding2D":
        padding = a.get("padding", default=(1, 1))
        if isinstance(padding, (list, tuple)) and len(padding) == 4:
            padding = ((padding[0], padding[1]), (padding[2], padding[3]))
        fmt = _data_format(a, generation, plan)
        plan.channels_first = False  # a pad runs channels-first everywhere
        plan.cls, plan.kwargs = L.ZeroPadding2D, dict(padding=padding, data_format=fmt)
    else:
        pooled = class_name.replace("Global", "").replace("Pooling", "")
        plan.cls = getattr(L, class_name)
        fmt = (
            _data_format(a, generation, plan)
            if pooled.endswith("2D")
            else a.get("data_format", default="channels_last")
        )
        plan.channels_first = False  # global pooling: a reduction
        plan.kwargs = dict(data_format=fmt)


_SIMPLE = {"Activation", "Dropout", "Flatten", "Reshape", "Permute", "Embedding",
           "ZeroPadding1D", "ZeroPadding2D", "GlobalAveragePooling1D",
           "GlobalMaxPooling1D", "GlobalAveragePooling2D",
           "GlobalMaxPooling2D"}  # fmt: skip
_MERGES = {"Merge": None, "Concatenate": "concat", "Add": "sum",
           "Multiply": "mul", "Average": "ave", "Maximum": "max"}  # fmt: skip


def translate(node, generation, target):
    """The `Plan` for one node; ``target``: "keras_bn" or "keras"."""
    plan = Plan()
    a = _Args(node.config, plan)
    name = node.class_name
    if name == "Dense":
        _dense(a, plan, generation)
    elif name in ("Convolution1D", "Conv1D", "Convolution2D", "Conv2D"):
        _conv(a, plan, generation, 1 if "1D" in name else 2)
    elif name in (
        "MaxPooling1D",
        "MaxPooling2D",
        "AveragePooling1D",
        "AveragePooling2D",
    ):
        _pool(
            a,
            plan,
            generation,
            1 if "1D" in name else 2,
            "max" if "Max" in name else "avg",
        )
    elif name == "BatchNormalization":
        _batch_norm(a, plan, generation, target)
    elif name in _MERGES:
        _merge(a, plan, generation, _MERGES[name])
    elif name in _SIMPLE:
        _simple(a, plan, generation, name)
    elif name == "Lambda":
        plan.problems.append(
            ("class_name", "a Lambda layer's stored code is never run")
        )
        return plan
    else:
        plan.problems.append(("class_name", f"layer class {name!r} is not supported"))
        return plan
    a.leftover()
    if plan.channels_first and plan.cls.__name__ not in _CHANNELS_FIRST_WRAPPED:
        plan.channels_first = False
    return plan
