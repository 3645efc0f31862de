"""One file layer's arrays, checked and converted for one model layer.

Every array must hold real numbers; a convolution kernel is converted
(`kernels`), a BatchNormalization's fourth array too (for the target's
form and epsilon, `keras_bn.convert.convert_running_statistic`); then each
is cast to the dtype of the variable it goes into and must be finite there.
Nothing here assigns anything.
"""

import dataclasses
import re

import keras
import numpy as np

from keras_bn.batch_normalization import BatchNormalization
from keras_bn.convert import convert_running_statistic
from keras_bn.legacy import kernels, recurrent
from keras_bn.legacy.errors import LegacyFileError

__all__ = [
    "Step",
    "batch_norm_of",
    "batch_norm_roles",
    "batch_norm_step",
    "is_batch_norm",
    "is_named",
    "plain_step",
    "role",
]

# The last part of a weight's name, for each of a BatchNormalization's
# arrays: Keras 1.x names them "<layer>_running_std", Keras 2.x
# "<layer>/moving_variance:0", Keras 3 keras_bn "<model>/<layer>/running_std".
_BATCH_NORM_ROLES = {
    "gamma": "gamma",
    "beta": "beta",
    "running_mean": "mean",
    "moving_mean": "mean",
    "running_std": "fourth",
    "moving_variance": "fourth",
}


@dataclasses.dataclass
class Step:
    """What one of the model's layers gets: its arrays, in its variables'
    dtypes, and attributes to set on it (restored if anything fails)."""

    target: object
    arrays: list
    attributes: dict = dataclasses.field(default_factory=dict)


def role(weight_name):
    """``gamma``, ``beta``, ``mean``, ``fourth`` or None, from a Keras 1.x/2.x
    weight name."""
    base = weight_name.split("/")[-1].split(":")[0]
    # Keras 1.x on TensorFlow: a name that repeated in the session got a
    # suffix (Normalize_gamma_2:0).
    unsuffixed = re.sub(r"_[0-9]+$", "", base)
    for suffix, role in _BATCH_NORM_ROLES.items():
        for name in (base, unsuffixed):
            if name == suffix or name.endswith("_" + suffix):
                return role
    return None


def is_batch_norm(layer):
    return isinstance(layer, (BatchNormalization, keras.layers.BatchNormalization))


def batch_norm_of(layer):
    """The BatchNormalization that ``layer`` is, or wraps in a
    ``TimeDistributed`` (its arrays are the wrapped layer's), or None."""
    if isinstance(layer, keras.layers.TimeDistributed):
        layer = layer.layer
    return layer if is_batch_norm(layer) else None


def is_named(source):
    """Whether the arrays carry Keras 1.x/2.x names (a file without names
    calls them ``param_{n}``)."""
    return not all(name.startswith("param_") for name in source.weight_names)


# -- checking -----------------------------------------------------------------


def _fail(path, source, name, message):
    return LegacyFileError(
        f"Layer '{source.name}': array '{name}' {message}",
        path=path,
        layer=source.name,
        field=name,
    )


def _real(path, source, name, array):
    """The array, if it holds real numbers (integers or floats): strings,
    booleans, complex and compound arrays are refused."""
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise _fail(
            path, source, name, f"must hold real numbers, got dtype {array.dtype}."
        )
    return array


def _stored(path, source, target, name, array, variable):
    """The array as the variable will hold it: the variable's shape, cast to
    its dtype, and finite there (1e39 is finite in float64, not in
    float32)."""
    array = _real(path, source, name, array)
    if tuple(array.shape) != tuple(variable.shape):
        raise _fail(
            path,
            source,
            name,
            f"has shape {array.shape}, the model's layer '{target.name}' takes "
            f"shape {tuple(variable.shape)}.",
        )
    dtype = np.dtype(keras.backend.standardize_dtype(variable.dtype))
    with np.errstate(all="ignore"):
        stored = array.astype(dtype)
    if dtype.kind == "f" and not np.all(np.isfinite(stored)):
        count = int(np.sum(~np.isfinite(stored)))
        raise _fail(
            path,
            source,
            name,
            f"must be finite, got {count} non-finite values in {dtype} (the "
            f"dtype of '{target.name}').",
        )
    return stored


def plain_step(path, source, target, facts):
    """A layer other than BatchNormalization: its arrays as they are, but
    for convolution kernels (`kernels`) and Keras 1.x's per-gate recurrent
    arrays (`recurrent`)."""
    variables = target.weights
    names = list(source.weight_names)
    arrays = [
        _real(path, source, name, array) for name, array in zip(names, source.arrays)
    ]
    config = facts.layer_configs.get(source.name, ("", {}))[1]
    ordering = facts.dim_ordering or config.get("dim_ordering")
    regrouped = recurrent.convert(names, arrays, target, ordering)
    if regrouped is not arrays:
        names = [f"{name} (from the per-gate arrays)" for name in ("W", "U", "b")]
        names = names * (len(regrouped) // 3)
        arrays = regrouped
    if len(arrays) != len(variables):
        raise LegacyFileError(
            f"Layer '{source.name}': the file holds {len(source.arrays)} arrays "
            f"{list(source.weight_names)}, the model's layer '{target.name}' takes "
            f"{len(variables)}.",
            path=path,
            layer=source.name,
        )
    arrays = kernels.convert(path, source, target, arrays, facts)
    return Step(
        target,
        [
            _stored(path, source, target, name, array, variable)
            for name, array, variable in zip(names, arrays, variables)
        ],
    )


# -- BatchNormalization ---------------------------------------------------------


def batch_norm_roles(path, source):
    """``{role: (weight name, array)}`` of a file's BatchNormalization."""
    if is_named(source):
        roles = {
            role(name): (name, array)
            for name, array in zip(source.weight_names, source.arrays)
        }
        if None in roles or len(roles) != len(source.arrays):
            raise LegacyFileError(
                f"Layer '{source.name}': expected BatchNormalization arrays "
                "(gamma, beta, running_mean/moving_mean, "
                f"running_std/moving_variance), got {list(source.weight_names)}.",
                path=path,
                layer=source.name,
            )
        return roles
    if len(source.arrays) not in (2, 4):
        raise LegacyFileError(
            f"Layer '{source.name}': a Keras 0.x BatchNormalization holds 4 arrays "
            "(gamma, beta, running_mean, running_std), or 2 (gamma, beta) in "
            f"Keras 0.1.x; the file holds {len(source.arrays)}.",
            path=path,
            layer=source.name,
        )
    roles = ("gamma", "beta", "mean", "fourth")
    return {
        role: (name, array)
        for role, name, array in zip(roles, source.weight_names, source.arrays)
    }


def _check_affine(path, source, target, roles):
    for role, option in (("gamma", "scale"), ("beta", "center")):
        if (role in roles) != getattr(target, option):
            raise LegacyFileError(
                f"Layer '{source.name}': the file "
                f"{'holds' if role in roles else 'has no'} {role}, but the "
                f"model's layer '{target.name}' has "
                f"{option}={getattr(target, option)}.",
                path=path,
                layer=source.name,
                field=role,
            )
    if ("mean" in roles) != ("fourth" in roles):
        raise LegacyFileError(
            f"Layer '{source.name}': the file holds "
            f"{list(source.weight_names)}, which has one running statistic "
            "without the other.",
            path=path,
            layer=source.name,
        )


def _check_mode(path, source, target, bn):
    """The source's mode, where the file tells it, must be the target's."""
    target_mode = target.mode if isinstance(target, BatchNormalization) else 0
    if bn.mode is not None and bn.mode != target_mode:
        kind = {0: "featurewise", 1: "samplewise", 2: "batch statistics at inference"}
        raise LegacyFileError(
            f"Layer '{source.name}': the file's layer has mode={bn.mode} "
            f"({kind[bn.mode]}), the model's layer '{target.name}' "
            f"({type(target).__name__}) computes mode={target_mode}.",
            path=path,
            layer=source.name,
            field="mode",
        )


def _fourth(path, source, target, roles, bn, variable):
    """The target's fourth array, converted from the source's."""
    name, array = roles["fourth"]
    array = _real(path, source, name, array)
    if not np.all(np.isfinite(array)):
        raise _fail(path, source, name, "must be finite, got non-finite values.")
    if bn.epsilon is None:
        raise LegacyFileError(
            f"epsilon: the file does not record the epsilon of '{source.name}' "
            "and its Keras version is unknown; pass the epsilon its "
            "BatchNormalization layers used (Keras 1.0.6 to 1.0.7: 1e-6, 1.0.8 "
            "to 1.1.x: 1e-5, 1.2.x: 1e-3).",
            path=path,
            layer=source.name,
            field="epsilon",
        )
    is_seed = isinstance(target, BatchNormalization)
    try:
        with np.errstate(all="ignore"):
            return convert_running_statistic(
                array,
                bn.form,
                bn.epsilon,
                "std" if is_seed else "variance",
                target.epsilon,
                f"Layer '{source.name}' (array '{name}', into '{target.name}')",
            )
    except ValueError as error:
        raise LegacyFileError(
            str(error), path=path, layer=source.name, field=name
        ) from None


def batch_norm_step(path, source, target, bn):
    """A BatchNormalization's arrays converted for ``target``; ``None`` in
    the running statistics' place for files that saved none (the target
    keeps its own)."""
    roles = batch_norm_roles(path, source)
    _check_affine(path, source, target, roles)
    _check_mode(path, source, target, bn)
    is_seed = isinstance(target, BatchNormalization)
    variables = {
        "gamma": target.gamma if target.scale else None,
        "beta": target.beta if target.center else None,
        "mean": target.running_mean if is_seed else target.moving_mean,
        "fourth": target.running_std if is_seed else target.moving_variance,
    }
    converted = dict(roles)
    if "fourth" in roles:
        fourth = _fourth(path, source, target, roles, bn, variables["fourth"])
        converted["fourth"] = (roles["fourth"][0], fourth)
    arrays = []
    for role in ("gamma", "beta", "mean", "fourth"):
        if variables[role] is None:
            continue
        if role not in converted:
            arrays.append(np.asarray(variables[role].numpy()))
            continue
        name, array = converted[role]
        arrays.append(_stored(path, source, target, name, array, variables[role]))
    if is_seed and target.renorm_momentum is not None:
        # Batch Renormalization's own estimates (renorm_mean, renorm_std)
        # start from the file's running estimates, as at construction they
        # start from the running ones.
        arrays += arrays[-2:]
    attributes = {}
    if is_seed and target.mode == 1 and bn.samplewise_epsilon_in_root is not None:
        attributes["samplewise_epsilon_in_root"] = bn.samplewise_epsilon_in_root
    return Step(target, arrays, attributes)
