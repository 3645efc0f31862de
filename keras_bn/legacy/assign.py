"""Putting a legacy file's arrays into a Keras 3 model.

The file's layers that hold arrays are matched, in order, with the model's
layers that hold weights; each array is checked and converted (a
BatchNormalization's fourth array for the target layer's form and epsilon),
and only when every layer has passed is anything assigned: all or nothing.
"""

import math
import numbers
import warnings

import keras
import numpy as np

from keras_bn.batch_normalization import BatchNormalization
from keras_bn.convert import convert_running_statistic
from keras_bn.legacy import releases
from keras_bn.legacy.reading import LegacyLayer, read_weights

__all__ = ["load_weights"]

# The last part of a weight's name, for each of a BatchNormalization's
# arrays: Keras 1.x names them "<layer>_running_std", Keras 2.x
# "<layer>/moving_variance:0".
_BATCH_NORM_ROLES = {
    "gamma": "gamma",
    "beta": "beta",
    "running_mean": "mean",
    "moving_mean": "mean",
    "running_std": "fourth",
    "moving_variance": "fourth",
}


# -- what a BatchNormalization's arrays mean -------------------------------------


def _role(weight_name):
    """``gamma``, ``beta``, ``mean``, ``fourth`` or None, from a Keras 1.x/2.x
    weight name."""
    base = weight_name.split("/")[-1].split(":")[0]
    for suffix, role in _BATCH_NORM_ROLES.items():
        if base == suffix or base.endswith("_" + suffix):
            return role
    return None


def _config_epsilons(config):
    """``{layer name: epsilon}`` for every BatchNormalization in a model
    config, nested models included."""
    found = {}
    if isinstance(config, dict):
        inner = config.get("config")
        if (
            config.get("class_name") == "BatchNormalization"
            and isinstance(inner, dict)
            and "epsilon" in inner
        ):
            found[inner.get("name")] = float(inner["epsilon"])
        for value in config.values():
            found.update(_config_epsilons(value))
    elif isinstance(config, list):
        for value in config:
            found.update(_config_epsilons(value))
    return found


# -- loading -------------------------------------------------------------------


def _is_batch_norm(layer):
    return isinstance(layer, (BatchNormalization, keras.layers.BatchNormalization))


def _weighted_layers(layer):
    """The model's layers that hold weights, nested models flattened, in the
    order of ``model.layers``."""
    if isinstance(layer, keras.Model):
        return [leaf for sub in layer.layers for leaf in _weighted_layers(sub)]
    return [layer] if layer.weights else []


def _file_layers(weights, targets):
    """The file's weighted layers, one per target layer. A Keras 0.x Graph's
    flat list is cut by the targets' weight counts; its BatchNormalizations
    hold 4 arrays from Keras 0.3.0 on, 2 (gamma, beta) before."""
    if weights.format != "keras0_graph":
        return [layer for layer in weights.layers if layer.arrays]
    (graph,) = weights.layers
    for batch_norm_count in (4, 2):
        counts = [
            batch_norm_count if _is_batch_norm(t) else len(t.weights) for t in targets
        ]
        if sum(counts) == len(graph.arrays):
            break
    else:
        raise ValueError(
            f"path: the Graph's flat list in {weights.path!r} holds "
            f"{len(graph.arrays)} arrays; the model's weighted layers take "
            f"{sum(len(t.weights) for t in targets)} (BatchNormalizations counted "
            "as 4, or as 2 for files before Keras 0.3.0)."
        )
    layers, start = [], 0
    for count in counts:
        names = graph.weight_names[start : start + count]
        layers.append(
            LegacyLayer(
                f"graph {names[0]}..{names[-1]}",
                names,
                graph.arrays[start : start + count],
            )
        )
        start += count
    return layers


def _check_finite(source, name, array):
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"Layer '{source.name}': array '{name}' must be numeric, got dtype "
            f"{array.dtype}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"Layer '{source.name}': array '{name}' must be finite, got "
            f"{int(np.sum(~np.isfinite(array)))} non-finite values."
        )


def _check_shape(source, target, name, array, shape):
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            f"Layer '{source.name}': array '{name}' has shape {array.shape}, the "
            f"model's layer '{target.name}' takes shape {tuple(shape)}."
        )


def _plain_arrays(source, target):
    """A non-BatchNormalization layer's arrays, as they are."""
    variables = target.weights
    if len(source.arrays) != len(variables):
        raise ValueError(
            f"Layer '{source.name}': the file holds {len(source.arrays)} arrays "
            f"{list(source.weight_names)}, the model's layer '{target.name}' takes "
            f"{len(variables)}."
        )
    for name, array, variable in zip(source.weight_names, source.arrays, variables):
        _check_finite(source, name, array)
        _check_shape(source, target, name, array, variable.shape)
    return list(source.arrays)


def _is_named(source):
    """Whether the arrays carry Keras 1.x/2.x names (a file without names
    calls them ``param_{n}``)."""
    return not all(name.startswith("param_") for name in source.weight_names)


def _batch_norm_roles(source):
    """``{role: (weight name, array)}`` of a file's BatchNormalization."""
    if _is_named(source):
        roles = {
            _role(name): (name, array)
            for name, array in zip(source.weight_names, source.arrays)
        }
        if None in roles or len(roles) != len(source.arrays):
            raise ValueError(
                f"Layer '{source.name}': expected BatchNormalization arrays "
                "(gamma, beta, running_mean/moving_mean, "
                f"running_std/moving_variance), got {list(source.weight_names)}."
            )
        return roles
    if len(source.arrays) not in (2, 4):
        raise ValueError(
            f"Layer '{source.name}': a Keras 0.x BatchNormalization holds 4 arrays "
            "(gamma, beta, running_mean, running_std), or 2 (gamma, beta) in "
            f"Keras 0.1.x; the file holds {len(source.arrays)}."
        )
    roles = ("gamma", "beta", "mean", "fourth")
    return {
        role: (name, array)
        for role, name, array in zip(roles, source.weight_names, source.arrays)
    }


def _batch_norm_arrays(source, target, form, epsilon):
    """A BatchNormalization's arrays converted for ``target``.

    Returns ``(arrays, complete)``: ``complete`` is False for files that
    saved no running statistics, whose targets keep their own."""
    roles = _batch_norm_roles(source)
    for role, option in (("gamma", "scale"), ("beta", "center")):
        if (role in roles) != getattr(target, option):
            raise ValueError(
                f"Layer '{source.name}': the file "
                f"{'holds' if role in roles else 'has no'} {role}, but the "
                f"model's layer '{target.name}' has "
                f"{option}={getattr(target, option)}."
            )
    is_seed = isinstance(target, BatchNormalization)
    mean_variable = target.running_mean if is_seed else target.moving_mean
    fourth_variable = target.running_std if is_seed else target.moving_variance
    shape = tuple(mean_variable.shape)
    for name, array in roles.values():
        _check_finite(source, name, array)
        _check_shape(source, target, name, array, shape)
    affine = [roles[r][1] for r in ("gamma", "beta") if r in roles]
    if "mean" not in roles and "fourth" not in roles:
        return affine + [mean_variable.numpy(), fourth_variable.numpy()], False
    if "mean" not in roles or "fourth" not in roles:
        raise ValueError(
            f"Layer '{source.name}': the file holds "
            f"{list(source.weight_names)}, which has one running statistic "
            "without the other."
        )
    if epsilon is None:
        raise ValueError(
            f"epsilon: the file does not record the epsilon of '{source.name}' "
            "and its Keras version is unknown; pass the epsilon its "
            "BatchNormalization layers used (Keras 1.0.6 to 1.0.7: 1e-6, 1.0.8 "
            "to 1.1.x: 1e-5, 1.2.x: 1e-3)."
        )
    fourth = convert_running_statistic(
        roles["fourth"][1],
        form,
        epsilon,
        "std" if is_seed else "variance",
        target.epsilon,
        f"Layer '{source.name}' (array '{roles['fourth'][0]}', into '{target.name}')",
    )
    return affine + [roles["mean"][1], fourth], True


def _check_options(running_std, epsilon, keras_version):
    if running_std not in ("auto", "std", "variance"):
        raise ValueError(
            f'running_std: expected "auto", "std" or "variance", got {running_std!r}.'
        )
    if epsilon is not None and (
        not isinstance(epsilon, numbers.Real)
        or isinstance(epsilon, bool)
        or not math.isfinite(epsilon)
        or epsilon < 0
    ):
        raise ValueError(
            f"epsilon: expected None or a finite number >= 0, got {epsilon!r}."
        )
    if (
        keras_version is not None
        and releases.version_tuple(
            keras_version if isinstance(keras_version, str) else None
        )
        is None
    ):
        raise ValueError(
            f'keras_version: expected None or a version such as "1.0.8", got '
            f"{keras_version!r}."
        )


def load_weights(model, path, *, running_std="auto", epsilon=None, keras_version=None):
    """Loads a Keras 0.x, 1.x or 2.x HDF5 file into a Keras 3 model.

    The file's layers that hold arrays go, in order, into the model's layers
    that hold weights (nested models flattened, in the order of
    ``model.layers``). Arrays go in as they are (Dense: kernel then bias),
    except a BatchNormalization's fourth array, which is converted so that
    the model computes at inference exactly what the source did:

    - into a `keras_bn.BatchNormalization`: the seed's form,
      ``running_std = denominator - epsilon``;
    - into a `keras.layers.BatchNormalization`: the variance form,
      ``moving_variance = denominator**2 - epsilon``,

    where ``denominator`` is the source's: ``running_std + e`` (Keras 0.x to
    1.0.5), ``sqrt(variance + e)`` (1.0.7 on, Keras 2 and later) or
    ``sqrt(variance) + e`` (Keras 1.0.7 to 1.0.8 on Theano), and ``e`` the
    source's epsilon: from the model config of a whole-model file, else the
    ``epsilon`` argument, else the source version's default.

    Files from Keras 0.1.x (and 0.x Graph files before 0.3.0) saved only
    gamma and beta: those load, the running estimates keep their values, and
    a warning points at `keras_bn.recompute_statistics`.

    Everything is read, checked and converted before anything is assigned:
    a failed call leaves the model as it was.

    Args:
        model: A built Keras 3 model (or layer).
        path: The HDF5 file.
        running_std: What a BatchNormalization's fourth array is: ``"auto"``
            (from the file's Keras version; every Keras 0.x file holds a std),
            ``"std"`` or ``"variance"``. Keras 1.x weights files record no
            version: pass ``"std"`` (Keras 1.0.5 and earlier, 1.0.6 with
            Theano) or ``"variance"`` (1.0.6 with TensorFlow, 1.0.7 on), or
            ``keras_version``.
        epsilon: The source layers' epsilon, for files that do not record it
            (all but whole-model files); default: the source version's
            default (1e-6 for every Keras that kept a std).
        keras_version: The Keras version that wrote the file, for files that
            do not record it (Keras 1.x weights files), e.g. ``"1.0.8"``.

    Raises:
        ValueError: the file cannot be read, its layout is unknown, its
            layers do not match the model's in number or shapes, an array is
            not finite, or the fourth array's meaning cannot be told.
    """
    _check_options(running_std, epsilon, keras_version)
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model: expected a Keras model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"model: '{model.name}' is not built; build it (call it once, or "
            "give it an Input) so that its weights exist."
        )
    weights = read_weights(path)
    targets = _weighted_layers(model)
    sources = _file_layers(weights, targets)
    if len(sources) != len(targets):
        raise ValueError(
            f"path: {weights.path!r} holds {len(sources)} layers with weights "
            f"{[s.name for s in sources]}; the model has {len(targets)} "
            f"{[t.name for t in targets]}."
        )
    form, default_epsilon = None, None
    if any(_is_batch_norm(t) for t in targets):
        form, default_epsilon = releases.source_form(
            weights, running_std, keras_version
        )
    config_epsilons = _config_epsilons(weights.model_config)

    plan, without_statistics = [], []
    for source, target in zip(sources, targets):
        file_batch_norm = any(_role(name) == "fourth" for name in source.weight_names)
        if _is_named(source) and file_batch_norm != _is_batch_norm(target):
            kind = "a" if file_batch_norm else "not a"
            raise ValueError(
                f"Layer '{source.name}': the file's layer is {kind} "
                f"BatchNormalization, the model's "
                f"layer '{target.name}' is a {type(target).__name__}."
            )
        if not _is_batch_norm(target):
            plan.append((target, _plain_arrays(source, target)))
            continue
        source_epsilon = config_epsilons.get(
            source.name, default_epsilon if epsilon is None else epsilon
        )
        arrays, complete = _batch_norm_arrays(source, target, form, source_epsilon)
        if len(arrays) != len(target.weights):
            raise ValueError(
                f"Layer '{source.name}': the model's layer '{target.name}' takes "
                f"{len(target.weights)} arrays, a BatchNormalization gives "
                f"{len(arrays)}."
            )
        if not complete:
            without_statistics.append(target.name)
        plan.append((target, arrays))

    previous = [(target, target.get_weights()) for target, _ in plan]
    try:
        for target, arrays in plan:
            target.set_weights(arrays)
    except Exception:
        for target, values in previous:
            target.set_weights(values)
        raise
    if without_statistics:
        warnings.warn(
            f"{weights.path}: the BatchNormalization layers {without_statistics} "
            "saved only gamma and beta (Keras 0.1.x, or a 0.x Graph before "
            "0.3.0); their running estimates keep the values they had. "
            "Recompute them from data: keras_bn.recompute_statistics(model, data).",
            UserWarning,
            stacklevel=2,
        )
