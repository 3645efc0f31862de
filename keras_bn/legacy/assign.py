"""Weights from Keras 0.x, 1.x and 2.x HDF5 files, BatchNormalization converted.

`read_weights` tells what a legacy file holds; `load_weights` puts it into a
Keras 3 model whose weighted layers match the file's in order. Layouts
(SEMANTICS.md, "Legacy HDF5 weight files"):

- Keras 0.x ``Sequential.save_weights``: root attribute ``nb_layers``, groups
  ``layer_{k}`` holding ``param_{n}``;
- Keras 0.x ``Graph.save_weights``: one group ``graph`` holding a flat
  ``param_{n}`` list for the whole model;
- Keras 1.x and 2.x ``save_weights``: root attribute ``layer_names`` (split
  into ``layer_names0``, ``layer_names1``, ... from Keras 2.1.5 on), one
  group per layer with attribute ``weight_names``; whole-model files
  (``save_model``) hold the same under ``model_weights``, with the model's
  config at the root.

A BatchNormalization's fourth array is a standard deviation up to Keras
1.0.5 and a variance from 1.0.7 on (1.0.6 depends on the backend); the
loader decides from the file's ``keras_version`` and converts it exactly for
the target layer: a std for `keras_bn.BatchNormalization`, a variance for
`keras.layers.BatchNormalization`.
"""

import dataclasses
import json
import math
import numbers
import os
import re
import warnings

import h5py
import keras
import numpy as np

from keras_bn.batch_normalization import BatchNormalization
from keras_bn.convert import convert_running_statistic

__all__ = ["LegacyLayer", "LegacyWeights", "load_weights", "read_weights"]

FORMATS = {
    "keras0_sequential": "Keras 0.x Sequential (nb_layers)",
    "keras0_graph": "Keras 0.x Graph (graph)",
    "keras1": "Keras 1.x (layer_names)",
    "keras2": "Keras 2.x or later (layer_names)",
}

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


@dataclasses.dataclass(frozen=True)
class LegacyLayer:
    """One layer's arrays as a legacy file holds them.

    Attributes:
        name: The layer's name in the file (``layer_{k}`` in Keras 0.x
            Sequential files, ``graph`` for a Keras 0.x Graph's flat list).
        weight_names: The arrays' names (``param_{n}`` where the file has
            none).
        arrays: The arrays, as NumPy arrays.
    """

    name: str
    weight_names: tuple
    arrays: tuple


@dataclasses.dataclass(frozen=True)
class LegacyWeights:
    """What a legacy weights file holds.

    Attributes:
        path: The file.
        format: One of ``FORMATS``' keys.
        keras_version: The Keras version that wrote the file, or None where
            it does not record one (Keras 0.x files, Keras 1.x weights files).
        backend: The backend that wrote the file, as recorded (Keras 2.x), or
            told by the weight names in Keras 1.x files (TensorFlow names
            end in ``:0``, Theano names do not), or None.
        whole_model: Whether this is a whole-model file (``model_weights``).
        model_config: The model's config from a whole-model file, or None.
        layers: The layers, `LegacyLayer`s, in the file's order, including
            those without weights.
    """

    path: str
    format: str
    keras_version: str | None
    backend: str | None
    whole_model: bool
    model_config: dict | None
    layers: tuple

    def batch_norm_form(self):
        """What the file's BatchNormalization arrays mean, as far as the file
        tells.

        Returns:
            ``(form, epsilon)``: how the source normalized with its fourth
            array, ``"std"`` (``(x - m) / (a + e)``), ``"variance"``
            (``(x - m) / sqrt(a + e)``) or ``"theano_variance"``
            (``(x - m) / (sqrt(a) + e)``), and the version's default epsilon;
            ``(None, None)`` where the file does not tell (Keras 1.x weights
            files).
        """
        try:
            return _source_form(self, "auto", None)
        except ValueError:
            return None, None


# -- reading -------------------------------------------------------------------


def read_weights(path):
    """Reads a Keras 0.x, 1.x or 2.x HDF5 weights or whole-model file.

    Args:
        path: The file.

    Returns:
        A `LegacyWeights`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, a truncated or damaged one, or a
            layout that is none of the legacy Keras formats.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no file at {path!r}.")
    if not h5py.is_hdf5(path):
        raise ValueError(f"path: {path!r} is not an HDF5 file.")
    try:
        with h5py.File(path, "r") as file:
            return _read(file, path)
    except OSError as error:
        raise ValueError(
            f"path: cannot read {path!r}, a truncated or damaged HDF5 file: {error}"
        ) from None


def _read(file, path):
    if "nb_layers" in file.attrs:
        layers = [
            _read_params(_group(file, f"layer_{k}", path), f"layer_{k}", path)
            for k in range(int(file.attrs["nb_layers"]))
        ]
        return LegacyWeights(
            path, "keras0_sequential", None, None, False, None, tuple(layers)
        )
    if isinstance(file.get("graph"), h5py.Group) and "nb_params" in file["graph"].attrs:
        layers = (_read_params(file["graph"], "graph", path),)
        return LegacyWeights(path, "keras0_graph", None, None, False, None, layers)

    group, whole_model = file, False
    if not _has_list(file.attrs, "layer_names") and "model_weights" in file:
        group, whole_model = _group(file, "model_weights", path), True
    if not _has_list(group.attrs, "layer_names"):
        raise ValueError(
            f"path: {path!r} holds none of the legacy Keras layouts (root "
            "attribute nb_layers, group graph, attribute layer_names, or group "
            "model_weights). Keras 3 files (.weights.h5, .keras) load with "
            "model.load_weights or keras.saving.load_model."
        )
    layers = tuple(
        _read_named_layer(_group(group, name, path), name, path)
        for name in _text_list(group.attrs, "layer_names")
    )
    keras_version = _text(file.attrs, "keras_version") or _text(
        group.attrs, "keras_version"
    )
    backend = _text(file.attrs, "backend") or _text(group.attrs, "backend")
    version = _version_tuple(keras_version)
    layout = "keras2" if version is not None and version[0] >= 2 else "keras1"
    if backend is None and layout == "keras1":
        backend = _backend_from_names(layers)
    model_config = None
    if "model_config" in file.attrs:
        try:
            model_config = json.loads(_text(file.attrs, "model_config"))
        except ValueError as error:
            raise ValueError(
                f"path: {path!r} has a model_config attribute that is not JSON: {error}"
            ) from None
    return LegacyWeights(
        path, layout, keras_version, backend, whole_model, model_config, layers
    )


def _group(parent, name, path):
    group = parent.get(name)
    if not isinstance(group, h5py.Group):
        raise ValueError(
            f"path: {path!r} lists a group {name!r} under {parent.name!r} that "
            "is missing."
        )
    return group


def _read_array(group, layer_name, weight_name, path):
    dataset = group.get(weight_name)
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(
            f"Layer '{layer_name}': array '{weight_name}' is missing from {path!r}."
        )
    try:
        return np.asarray(dataset[()])
    except OSError as error:
        raise ValueError(
            f"Layer '{layer_name}': array '{weight_name}' cannot be read from "
            f"{path!r}: {error}"
        ) from None


def _read_params(group, layer_name, path):
    """A Keras 0.x group: attribute ``nb_params``, datasets ``param_{n}``."""
    names = tuple(f"param_{n}" for n in range(int(group.attrs.get("nb_params", 0))))
    arrays = tuple(_read_array(group, layer_name, name, path) for name in names)
    return LegacyLayer(layer_name, names, arrays)


def _read_named_layer(group, layer_name, path):
    """A Keras 1.x/2.x group: attribute ``weight_names``, one dataset each."""
    names = tuple(_text_list(group.attrs, "weight_names"))
    arrays = tuple(_read_array(group, layer_name, name, path) for name in names)
    return LegacyLayer(layer_name, names, arrays)


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _text(attrs, key):
    """A text attribute, bytes (as old h5py wrote them) or str; None if absent."""
    if key not in attrs:
        return None
    value = attrs[key]
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    return _decode(value)


def _has_list(attrs, key):
    return key in attrs or f"{key}0" in attrs


def _text_list(attrs, key):
    """A list attribute, whole or split into ``key0``, ``key1``, ... (Keras
    2.1.5 on, for lists past HDF5's 64 KB attribute limit)."""
    if key in attrs:
        chunks = [attrs[key]]
    else:
        chunks, index = [], 0
        while f"{key}{index}" in attrs:
            chunks.append(attrs[f"{key}{index}"])
            index += 1
    return [_decode(value) for chunk in chunks for value in np.atleast_1d(chunk)]


def _version_tuple(keras_version):
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", keras_version or "")
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def _backend_from_names(layers):
    """TensorFlow variable names end in ':0'; Theano's shared variables keep
    the name Keras gave them."""
    names = [name for layer in layers for name in layer.weight_names]
    if any(name.endswith(":0") for name in names):
        return "tensorflow"
    if any(not name.startswith("param_") for name in names):
        return "theano"
    return None


# -- what a BatchNormalization's arrays mean -------------------------------------


def _role(weight_name):
    """``gamma``, ``beta``, ``mean``, ``fourth`` or None, from a Keras 1.x/2.x
    weight name."""
    base = weight_name.split("/")[-1].split(":")[0]
    for suffix, role in _BATCH_NORM_ROLES.items():
        if base == suffix or base.endswith("_" + suffix):
            return role
    return None


def _version_epsilon(version):
    """A Keras version's default BatchNormalization epsilon."""
    if version < (1, 0, 8):
        return 1e-6
    return 1e-5 if version < (1, 2, 0) else 1e-3


def _version_form(version, backend, keras_version):
    """How a Keras version's BatchNormalization used its fourth array
    (SEMANTICS.md, "Descendants and their weight lists")."""
    if version < (1, 0, 6):
        return "std"
    if version >= (1, 1, 0):
        return "variance"
    if backend not in ("theano", "tensorflow"):
        raise ValueError(
            f"running_std: Keras {keras_version} kept a std with Theano and a "
            "variance with TensorFlow, and this file does not tell its backend. "
            'Pass running_std="std" or running_std="variance".'
        )
    if version == (1, 0, 6):
        return "std" if backend == "theano" else "variance"
    # 1.0.7 and 1.0.8: Theano added epsilon outside the square root.
    return "theano_variance" if backend == "theano" else "variance"


def _source_form(weights, running_std, keras_version):
    """``(form, default epsilon or None)`` for the file's BatchNormalizations:
    the caller's ``running_std`` where given, else the file's version's."""
    if weights.format.startswith("keras0"):
        # Every Keras 0.x kept a std, with epsilon 1e-6 by default.
        return ("std" if running_std == "auto" else running_std), 1e-6
    version_text = weights.keras_version or keras_version
    version = _version_tuple(version_text)
    if version is not None:
        if running_std == "auto":
            running_std = _version_form(version, weights.backend, version_text)
        return running_std, _version_epsilon(version)
    if running_std == "auto":
        raise ValueError(
            f"running_std: {weights.path!r} is a Keras 1.x weights file, which "
            "does not record its Keras version, so it cannot tell whether its "
            "BatchNormalization running_std arrays are standard deviations "
            "(Keras 1.0.5 and earlier, 1.0.6 with Theano) or variances (1.0.6 "
            'with TensorFlow, 1.0.7 and later). Pass running_std="std" or '
            'running_std="variance" (with the epsilon= the layers used), or '
            'keras_version="1.x.y".'
        )
    # Every Keras that kept a std used epsilon 1e-6; the variance versions
    # differ (1e-6, 1e-5, 1e-3).
    return running_std, (1e-6 if running_std == "std" else None)


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
        and _version_tuple(keras_version if isinstance(keras_version, str) else None)
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
        form, default_epsilon = _source_form(weights, running_std, keras_version)
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
