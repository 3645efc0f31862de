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

import dataclasses
import json
import os

import h5py
import numpy as np

from keras_bn.legacy import releases

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
            return releases.source_form(self, "auto", None)
        except ValueError:
            return None, None


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
    version = releases.version_tuple(keras_version)
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


def _backend_from_names(layers):
    """TensorFlow variable names end in ':0'; Theano's shared variables keep
    the name Keras gave them."""
    names = [name for layer in layers for name in layer.weight_names]
    if any(name.endswith(":0") for name in names):
        return "tensorflow"
    if any(not name.startswith("param_") for name in names):
        return "theano"
    return None
