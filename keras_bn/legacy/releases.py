"""What each Keras release meant by its BatchNormalization arrays.

A release's BatchNormalization kept a running std or a running variance
(its "fourth array") and put its epsilon in one place or another; its
default epsilon changed too. Here, from a file's Keras version and
backend (or the caller's word where the file does not tell), how the source
normalized at inference: the release table of docs/legacy.md, which the
real releases' fixtures under tests/fixtures/real/ confirm.

Nothing here reads files or touches models.
"""

import dataclasses
import math
import numbers
import re

from keras_bn.legacy.errors import LegacyFileError, short_repr

__all__ = [
    "FORM_MEANINGS",
    "BatchNormSource",
    "batch_norm_source",
    "family",
    "source_form",
    "version_epsilon",
    "version_form",
    "version_tuple",
]


# What each form of the fourth array means, as the reports say it.
FORM_MEANINGS = {
    "std": "standard deviation, (x - mean) / (running_std + epsilon)",
    "variance": "variance, (x - mean) / sqrt(variance + epsilon)",
    "theano_variance": "variance, (x - mean) / (sqrt(variance) + epsilon)",
}


def version_tuple(keras_version):
    """``(major, minor, patch)`` from a version text, or None."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", keras_version or "")
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def version_epsilon(version):
    """A Keras version's default BatchNormalization epsilon."""
    if version < (1, 0, 8):
        return 1e-6
    return 1e-5 if version < (1, 2, 0) else 1e-3


def version_form(version, backend, keras_version, path=None):
    """How a Keras version's BatchNormalization used its fourth array."""
    if version < (1, 0, 6):
        return "std"
    if version >= (1, 0, 8):
        return "variance"
    if backend not in ("theano", "tensorflow"):
        raise LegacyFileError(
            f"running_std: Keras {keras_version} kept a std with Theano and a "
            "variance with TensorFlow, and this file does not tell its backend. "
            'Pass running_std="std" or running_std="variance".',
            path=path,
            field="running_std",
        )
    if version == (1, 0, 6):
        return "std" if backend == "theano" else "variance"
    # Only 1.0.7 on Theano added epsilon outside the square root; 1.0.8
    # passes sqrt(var + epsilon) to Theano's batch_normalization.
    if version == (1, 0, 7) and backend == "theano":
        return "theano_variance"
    return "variance"


def source_form(weights, running_std, keras_version):
    """``(form, default epsilon or None)`` for the file's BatchNormalizations:
    the caller's ``running_std`` where given, else the file's version's."""
    if weights.format.startswith("keras0"):
        # Every Keras 0.x kept a std, with epsilon 1e-6 by default.
        return ("std" if running_std == "auto" else running_std), 1e-6
    version_text = weights.keras_version or keras_version
    version = version_tuple(version_text)
    if version is not None:
        if running_std == "auto":
            running_std = version_form(
                version, weights.backend, version_text, weights.path
            )
        return running_std, version_epsilon(version)
    if running_std == "auto":
        raise LegacyFileError(
            f"running_std: {weights.path!r} is a Keras 1.x weights file, which "
            "does not record its Keras version, so it cannot tell whether its "
            "BatchNormalization running_std arrays are standard deviations "
            "(Keras 1.0.5 and earlier, 1.0.6 with Theano) or variances (1.0.6 "
            'with TensorFlow, 1.0.7 and later). Pass running_std="std" or '
            'running_std="variance" (with the epsilon= the layers used), or '
            'keras_version="1.x.y".',
            path=weights.path,
            field="running_std",
        )
    # Every Keras that kept a std used epsilon 1e-6; the variance versions
    # differ (1e-6, 1e-5, 1e-3).
    return running_std, (1e-6 if running_std == "std" else None)


def family(weights, keras_version=None):
    """0, 1, 2 or 3 (Keras 3 and later): the Keras that wrote the file, or
    None where neither the file nor the caller tells."""
    if weights.format.startswith("keras0"):
        return 0
    version = version_tuple(weights.keras_version or keras_version)
    if version is not None:
        return min(version[0], 3)
    # The layer_names layout without a version: a Keras 1.x save_weights
    # (Keras 2 recorded its version in every file).
    return 1 if weights.format == "keras1" else None


@dataclasses.dataclass(frozen=True)
class BatchNormSource:
    """How one of the file's BatchNormalizations normalized at inference.

    Attributes:
        form: ``"std"``, ``"variance"`` or ``"theano_variance"`` (see
            `keras_bn.convert.SOURCE_FORMS`).
        epsilon: Its epsilon, or None where nothing tells it.
        epsilon_origin: ``"config"``, ``"argument"`` or ``"default"`` (the
            release's default, assumed: the file does not record it).
        mode: 0 (featurewise), 1 (samplewise), 2 (Keras 1.x: batch
            statistics at inference too), or None where the file does not
            tell.
        samplewise_epsilon_in_root: The mode-1 formula: True for Keras 1.x
            (``(x - m) / (sqrt(var + e) + e)``), False for Keras 0.x
            (``(x - m) / (std + e)``), None where it does not apply.
    """

    form: str | None
    epsilon: float | None
    epsilon_origin: str | None
    mode: int | None
    samplewise_epsilon_in_root: bool | None


def is_keras_bn_class(class_name):
    """keras_bn's own layer, as Keras 3 registers it: ``keras_bn>...``."""
    return class_name.startswith("keras_bn>")


def is_batch_norm_class(class_name):
    """A BatchNormalization, stock or registered by a package
    (``package>BatchNormalization``)."""
    return class_name.rpartition(">")[2] == "BatchNormalization"


def _config_number(config, key, path, layer, kinds=numbers.Real):
    value = config.get(key)
    try:
        finite = math.isfinite(value)
    except (TypeError, OverflowError):  # not a number, or too large a one
        finite = False
    if (
        not isinstance(value, kinds)
        or isinstance(value, bool)
        or not finite
        or value < 0
    ):
        raise LegacyFileError(
            f"Layer '{layer}': the model config's {key!r} must be a finite "
            f"number >= 0, got {short_repr(value)}.",
            path=path,
            layer=layer,
            field=key,
        )
    return value


def _config_mode(config, path, layer):
    if "mode" not in config:
        return None
    mode = config["mode"]
    if isinstance(mode, bool) or mode not in (0, 1, 2):
        raise LegacyFileError(
            f"Layer '{layer}': the model config's 'mode' must be 0, 1 or 2, got "
            f"{mode!r}.",
            path=path,
            layer=layer,
            field="mode",
        )
    return int(mode)


def _wrapped(class_name, config):
    """A TimeDistributed's wrapped BatchNormalization: its class and config
    (the wrapper's group holds its arrays); any other layer's as they are."""
    inner = config.get("layer") if class_name == "TimeDistributed" else None
    if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
        inner_class = inner.get("registered_name") or inner.get("class_name")
        if isinstance(inner_class, str) and is_batch_norm_class(inner_class):
            return inner_class, inner["config"]
    return class_name, config


def batch_norm_source(weights, name, options, target_name=None):
    """The `BatchNormSource` of the file's layer ``name``.

    Args:
        weights: The `LegacyWeights`.
        name: The layer's name in the file.
        target_name: The model's layer it goes into (a per-layer
            ``epsilon`` may name either).
        options: ``(running_std, epsilon, keras_version)`` as the caller of
            `keras_bn.legacy.load_weights` gave them.
    """
    running_std, epsilon, keras_version = options
    path = weights.path
    class_name, config = _wrapped(*weights.layer_configs.get(name, ("", {})))
    if is_keras_bn_class(class_name):
        # keras_bn's own layer: a std in the seed's form, its epsilon and
        # mode in the config, whatever the version says.
        return BatchNormSource(
            "std",
            float(_config_number(config, "epsilon", path, name)),
            "config",
            _config_mode(config, path, name) or 0,
            bool(config.get("samplewise_epsilon_in_root", False)),
        )
    form, default = source_form(weights, running_std, keras_version)
    generation = family(weights, keras_version)
    mode = _config_mode(config, path, name)
    if mode is None and generation is not None and generation >= 2:
        mode = 0  # Keras 2 and later normalize featurewise only.
    in_root = {0: False, 1: True}.get(generation)
    if "epsilon" in config and is_batch_norm_class(class_name):
        value = float(_config_number(config, "epsilon", path, name))
        return BatchNormSource(form, value, "config", mode, in_root)
    if isinstance(epsilon, dict):
        epsilon = epsilon.get(name, epsilon.get(target_name))
    if epsilon is not None:
        return BatchNormSource(form, float(epsilon), "argument", mode, in_root)
    origin = None if default is None else "default"
    return BatchNormSource(form, default, origin, mode, in_root)


def samplewise_formula(generation):
    """What a release computed in BatchNormalization mode 1 (samplewise),
    as text."""
    if generation == 0:
        return "(x - mean) / (std + epsilon), std = x.std(axis=-1)"
    if generation == 1:
        return (
            "(x - mean) / (sqrt(var + epsilon) + epsilon), var = x.var(axis=-1) "
            "(keras_bn: samplewise_epsilon_in_root=True)"
        )
    return "none (Keras 2 and later normalize featurewise only)"


def kernel_conversion(generation, backend):
    """The convolution-kernel conversion `keras_bn.legacy.kernels` applies,
    as text."""
    if generation in (0, 1):
        layout = (
            "transposed from the channels-first layout (dim_ordering 'th': "
            "filters, channels, rows, cols) where the config or the shapes say "
            "so, else as stored ('tf')"
        )
    else:
        layout = "in Keras 3's layout as stored"
    if backend == "theano":
        return (
            layout
            + "; flipped in every spatial axis (Theano computed a true convolution)"
        )
    if backend is None:
        return (
            layout + "; the backend is not recorded: pass backend= to load convolutions"
        )
    return (
        layout
        + f"; not reversed ({backend} computed a cross-correlation, as Keras 3 does)"
    )
