"""Reading a legacy file: its layout, into `LegacyWeights` and `LegacyLayer`s.

Layouts (docs/legacy.md, "Legacy HDF5 files"):

- Keras 0.x ``Sequential.save_weights``: root attribute ``nb_layers``, groups
  ``layer_{k}`` holding ``param_{n}``;
- Keras 0.x ``Graph.save_weights``: one group ``graph`` holding a flat
  ``param_{n}`` list for the whole model;
- Keras 1.x and 2.x ``save_weights``: root attribute ``layer_names`` (split
  into ``layer_names0``, ``layer_names1``, ... from Keras 2.1.5 on), one
  group per layer with attribute ``weight_names``; whole-model files
  (``save_model``) hold the same under ``model_weights``, with the model's
  config at the root.

Nothing here knows what a release meant by its arrays (`releases`) or how
they go into a model (`assign`).
"""

import collections
import dataclasses
import json
import numbers
import os
import zipfile
from typing import Any

import h5py
import numpy as np

from keras_bn.legacy import releases
from keras_bn.legacy.errors import (
    LegacyFileError,
    LegacyFileNotFoundError,
    short_repr,
)

__all__ = ["FORMATS", "LegacyLayer", "LegacyWeights", "read_weights"]

FORMATS = {
    "keras0_sequential": "Keras 0.x Sequential (nb_layers)",
    "keras0_graph": "Keras 0.x Graph (graph)",
    "keras1": "Keras 1.x (layer_names)",
    "keras2": "Keras 2.x or later (layer_names)",
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
    weight_names: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]


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
        layer_configs: ``{layer name: (class name, config dict)}`` for every
            layer in ``model_config`` (nested models included), empty where
            the file has no config.
    """

    path: str
    format: str
    keras_version: str | None
    backend: str | None
    whole_model: bool
    model_config: dict[str, Any] | None
    layers: tuple[LegacyLayer, ...]
    layer_configs: dict[str, tuple[str, dict[str, Any]]] = dataclasses.field(
        default_factory=dict, compare=False
    )

    def batch_norm_form(self) -> tuple[str | None, float | None]:
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
            return releases.source_form(self, "auto", None)
        except ValueError:
            return None, None


def read_weights(path: str | os.PathLike[str]) -> LegacyWeights:
    """Reads a Keras 0.x, 1.x or 2.x HDF5 weights or whole-model file.

    Args:
        path: The file.

    Returns:
        A `LegacyWeights`.

    Raises:
        LegacyFileError: not an HDF5 file, a truncated or damaged one, a
            layout that is none of the legacy Keras formats, or attributes
            that contradict the file (counts, names, config); its subclass
            that is also a `FileNotFoundError` where there is no file.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise LegacyFileError(
            f"path: expected a file path, got {type(path).__name__}.", field="path"
        ) from None
    if not os.path.isfile(path):
        raise LegacyFileNotFoundError(f"path: no file at {path!r}.", field="path")
    if zipfile.is_zipfile(path):
        raise LegacyFileError(
            "a Keras 3 archive (.keras), not a legacy HDF5 file: load it with "
            "keras.saving.load_model(path) (import keras_bn first), or "
            "model.load_weights(path) into the same architecture.",
            path=path,
        )
    try:
        if not h5py.is_hdf5(path):
            raise LegacyFileError(f"path: {path!r} is not an HDF5 file.", path=path)
        with h5py.File(path, "r") as file:
            return _read(file, path, os.path.getsize(path))
    except LegacyFileError:
        raise
    except Exception as error:  # h5py raises OSError, RuntimeError, KeyError...
        raise LegacyFileError(
            f"cannot read {path!r}, a truncated or damaged HDF5 file: "
            f"{type(error).__name__}: {error}",
            path=path,
        ) from None


def _read(file, path, file_size):
    if "nb_layers" in file.attrs:
        count = _count(file.attrs, "nb_layers", len(file), "/", path)
        layers = [
            _read_params(
                _group(file, f"layer_{k}", path), f"layer_{k}", path, file_size
            )
            for k in range(count)
        ]
        return LegacyWeights(
            path, "keras0_sequential", None, None, False, None, tuple(layers)
        )
    if isinstance(file.get("graph"), h5py.Group) and "nb_params" in file["graph"].attrs:
        layers = (_read_params(file["graph"], "graph", path, file_size),)
        return LegacyWeights(path, "keras0_graph", None, None, False, None, layers)

    group, whole_model = file, False
    if not _has_list(file.attrs, "layer_names") and "model_weights" in file:
        group, whole_model = _group(file, "model_weights", path), True
    if not _has_list(group.attrs, "layer_names"):
        if isinstance(file.get("layers"), h5py.Group) or "vars" in file:
            raise LegacyFileError(
                "a Keras 3 weights file (model.save_weights('*.weights.h5')), "
                "not a legacy one: load it with model.load_weights(path) into "
                "the architecture that wrote it (keras_bn.convert converts "
                "between keras_bn and stock layers afterwards).",
                path=path,
            )
        raise LegacyFileError(
            f"path: {path!r} holds none of the legacy Keras layouts (root "
            "attribute nb_layers, group graph, attribute layer_names, or group "
            "model_weights). Keras 3 files (.weights.h5, .keras) load with "
            "model.load_weights or keras.saving.load_model.",
            path=path,
        )
    names = _text_list(group.attrs, "layer_names", group.name, path)
    repeated = sorted(name for name, n in collections.Counter(names).items() if n > 1)
    if repeated:
        # Each name would be read again: refused before any array is.
        raise LegacyFileError(
            f"layer_names lists {short_repr(repeated)} more than once.",
            path=path,
            field="layer_names",
        )
    layers = tuple(
        _read_named_layer(_group(group, name, path), name, path, file_size)
        for name in names
    )
    keras_version = _text(file.attrs, "keras_version", path) or _text(
        group.attrs, "keras_version", path
    )
    backend = _text(file.attrs, "backend", path) or _text(group.attrs, "backend", path)
    version = releases.version_tuple(keras_version)
    layout = "keras2" if version is not None and version[0] >= 2 else "keras1"
    if backend is None and layout == "keras1":
        backend = _backend_from_names(layers)
    model_config = _model_config(file.attrs, path)
    return LegacyWeights(
        path,
        layout,
        keras_version,
        backend,
        whole_model,
        model_config,
        layers,
        layer_configs(model_config, path),
    )


def _model_config(attrs, path):
    if "model_config" not in attrs:
        return None
    text = _text(attrs, "model_config", path)
    try:
        return json.loads(text)
    except RecursionError:
        raise LegacyFileError(
            "the model_config attribute is nested deeper than Python's JSON "
            "reader allows; no Keras model is.",
            path=path,
            field="model_config",
        ) from None
    except ValueError as error:
        raise LegacyFileError(
            f"the model_config attribute is not JSON: {error}",
            path=path,
            field="model_config",
        ) from None


def layer_configs(model_config, path=None):
    """``{layer name: (class name, config dict)}`` for every layer of a model
    config, nested models and wrapped layers included. Only the model's own
    structure is read (its ``layers``, a nested model's, a wrapper's
    ``layer``): a key anywhere else cannot stand in for a layer. Walked with
    an explicit stack, never recursion: the config is untrusted."""
    found, stack = {}, [model_config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):  # a Keras 1 Sequential's config
            stack.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        inner = node.get("config")
        # Keras 3 names a registered class "package>Class", in class_name or
        # in registered_name.
        class_name = node.get("registered_name") or node.get("class_name")
        if isinstance(inner, list):
            stack.extend(reversed(inner))
            continue
        if not isinstance(inner, dict):
            continue
        if isinstance(class_name, str) and isinstance(inner.get("name"), str):
            found.setdefault(inner["name"], (class_name, inner))
        for key in ("layers", "layer"):
            value = inner.get(key)
            if isinstance(value, list):
                stack.extend(reversed(value))
            elif isinstance(value, dict):
                stack.append(value)
    return found


def _group(parent, name, path):
    group = parent.get(name)
    if not isinstance(group, h5py.Group):
        raise LegacyFileError(
            f"path: {path!r} lists a group {name!r} under {parent.name!r} that "
            "is missing.",
            path=path,
            layer=name,
        )
    return group


def _count(attrs, key, limit, where, path):
    """A count attribute, a whole number from 0 to ``limit`` (what the group
    actually holds): checked before anything is allocated for it."""
    value = attrs[key]
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (np.generic,)):
        value = value.item()
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise LegacyFileError(
            f"attribute {key!r} of {where!r}: expected a whole number, got "
            f"{_preview(value)}.",
            path=path,
            field=key,
        )
    if not 0 <= value <= limit:
        raise LegacyFileError(
            f"attribute {key!r} of {where!r} is {value}, but {where!r} holds "
            f"{limit} members.",
            path=path,
            field=key,
        )
    return int(value)


def _preview(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_array(group, layer_name, weight_name, path, file_size):
    dataset = group.get(weight_name)
    if not isinstance(dataset, h5py.Dataset):
        raise LegacyFileError(
            f"Layer '{layer_name}': array '{weight_name}' is missing from {path!r}.",
            path=path,
            layer=layer_name,
            field=weight_name,
        )
    # A declared shape can claim far more than the file stores: check
    # before reading (Keras wrote datasets uncompressed).
    declared = dataset.size * dataset.dtype.itemsize
    limit = file_size * (1000 if dataset.compression else 1)
    if declared > limit:
        raise LegacyFileError(
            f"Layer '{layer_name}': array '{weight_name}' declares shape "
            f"{dataset.shape} ({declared} bytes), more than the file of "
            f"{file_size} bytes can hold.",
            path=path,
            layer=layer_name,
            field=weight_name,
        )
    try:
        return np.asarray(dataset[()])
    except Exception as error:
        raise LegacyFileError(
            f"Layer '{layer_name}': array '{weight_name}' cannot be read: "
            f"{type(error).__name__}: {error}",
            path=path,
            layer=layer_name,
            field=weight_name,
        ) from None


def _read_params(group, layer_name, path, file_size):
    """A Keras 0.x group: attribute ``nb_params``, datasets ``param_{n}``."""
    count = 0
    if "nb_params" in group.attrs:
        count = _count(group.attrs, "nb_params", len(group), group.name, path)
    names = tuple(f"param_{n}" for n in range(count))
    arrays = tuple(
        _read_array(group, layer_name, name, path, file_size) for name in names
    )
    return LegacyLayer(layer_name, names, arrays)


def _read_named_layer(group, layer_name, path, file_size):
    """A Keras 1.x/2.x group: attribute ``weight_names``, one dataset each."""
    names = tuple(_text_list(group.attrs, "weight_names", group.name, path))
    arrays = tuple(
        _read_array(group, layer_name, name, path, file_size) for name in names
    )
    return LegacyLayer(layer_name, names, arrays)


def _decode(value, key, path):
    if isinstance(value, bytes):
        try:
            return value.decode("utf8")
        except UnicodeDecodeError:
            raise LegacyFileError(
                f"attribute {key!r}: expected UTF-8 text, got {_preview(value)}.",
                path=path,
                field=key,
            ) from None
    if isinstance(value, str):
        return value
    raise LegacyFileError(
        f"attribute {key!r}: expected text, got {_preview(value)}.",
        path=path,
        field=key,
    )


def _text(attrs, key, path):
    """A text attribute, bytes (as old h5py wrote them) or str; None if absent."""
    if key not in attrs:
        return None
    value = attrs[key]
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    return _decode(value, key, path)


def _has_list(attrs, key):
    return key in attrs or f"{key}0" in attrs


def _text_list(attrs, key, where, path):
    """A list attribute, whole or split into ``key0``, ``key1``, ... (Keras
    2.1.5 on, for lists past HDF5's 64 KB attribute limit)."""
    if key in attrs:
        chunks = [attrs[key]]
    else:
        chunks, index = [], 0
        while f"{key}{index}" in attrs:
            chunks.append(attrs[f"{key}{index}"])
            index += 1
    values = []
    for chunk in chunks:
        chunk = np.atleast_1d(chunk)
        if chunk.size == 0:
            continue
        if chunk.ndim != 1:
            raise LegacyFileError(
                f"attribute {key!r} of {where!r}: expected a list of names, "
                f"got an array of shape {chunk.shape}.",
                path=path,
                field=key,
            )
        values.extend(_decode(value, key, path) for value in chunk.tolist())
    return values


def _backend_from_names(layers):
    """TensorFlow variable names end in ':0'; Theano's shared variables keep
    the name Keras gave them."""
    names = [name for layer in layers for name in layer.weight_names]
    if any(name.endswith(":0") for name in names):
        return "tensorflow"
    if any(not name.startswith("param_") for name in names):
        return "theano"
    return None
