"""Writers of legacy Keras HDF5 weight files, one function per layout.

Each writes what that Keras version's ``save_weights`` (or ``save_model``)
wrote, with the group, dataset and attribute names and types of
SEMANTICS.md, "Legacy HDF5 weight files": text attributes as bytes, and
lists of names as arrays of fixed-length bytes, as old h5py stored them.
The tests (and the legacy-weights notebook) build fixture files with them
in a temporary directory; nothing binary is committed.

Layers are given as ``(name, [(weight name, array), ...])`` pairs, in the
model's order, with an empty list for layers without weights.
"""

import json

import h5py
import numpy as np

__all__ = [
    "batch_norm_config",
    "keras1_layer",
    "keras2_layer",
    "sequential_config",
    "write_keras0_graph",
    "write_keras0_sequential",
    "write_keras1",
    "write_keras2",
]


def _names(names):
    """A list of names as old h5py stored it: fixed-length bytes, or an
    empty float array for an empty list."""
    return np.array([n.encode("utf8") for n in names]) if names else np.array([])


def write_keras0_sequential(path, layers):
    """Keras 0.x ``Sequential.save_weights``.

    Args:
        path: The file to write.
        layers: One list of arrays per layer (``[]`` for layers without
            weights), in the order ``get_weights()`` returned them; a
            BatchNormalization's is ``[gamma, beta, running_mean,
            running_std]`` (Keras 0.2.0 on) or ``[gamma, beta]`` (0.1.x).
    """
    with h5py.File(path, "w") as f:
        f.attrs["nb_layers"] = len(layers)
        for k, weights in enumerate(layers):
            g = f.create_group(f"layer_{k}")
            g.attrs["nb_params"] = len(weights)
            for n, param in enumerate(weights):
                g.create_dataset(f"param_{n}", data=np.asarray(param))


def write_keras0_graph(path, params):
    """Keras 0.x ``Graph.save_weights``: the model's ``get_weights()`` as one
    flat list (BatchNormalization running statistics in it from 0.3.0 on)."""
    with h5py.File(path, "w") as f:
        g = f.create_group("graph")
        g.attrs["nb_params"] = len(params)
        for n, param in enumerate(params):
            g.create_dataset(f"param_{n}", data=np.asarray(param))


def keras1_layer(name, arrays, *, backend="theano"):
    """A Keras 1.x layer entry: weights named ``{layer}_{param}``, with the
    ``:0`` suffix TensorFlow gives variable names.

    Args:
        name: The layer's name, e.g. ``"batchnormalization_1"``.
        arrays: ``{param: array}``, e.g. ``{"W": w, "b": b}`` for a Dense,
            ``{"gamma": ..., "beta": ..., "running_mean": ...,
            "running_std": ...}`` for a BatchNormalization.
        backend: ``"theano"`` or ``"tensorflow"``.
    """
    suffix = ":0" if backend == "tensorflow" else ""
    return name, [(f"{name}_{param}{suffix}", a) for param, a in arrays.items()]


def keras2_layer(name, arrays):
    """A Keras 2.x layer entry: weights named ``{layer}/{param}:0`` (the
    ``/`` makes nested groups), e.g. ``{"kernel": k, "bias": b}`` or
    ``{"gamma": ..., "beta": ..., "moving_mean": ..., "moving_variance":
    ...}``."""
    return name, [(f"{name}/{param}:0", a) for param, a in arrays.items()]


def _write_layers(group, layers, split_into=1):
    names = [name for name, _ in layers]
    if split_into > 1:
        for index, chunk in enumerate(np.array_split(np.array(names), split_into)):
            group.attrs[f"layer_names{index}"] = _names(list(chunk))
    else:
        group.attrs["layer_names"] = _names(names)
    for name, weights in layers:
        g = group.create_group(name)
        g.attrs["weight_names"] = _names([weight_name for weight_name, _ in weights])
        for weight_name, array in weights:
            g.create_dataset(weight_name, data=np.asarray(array))


def _model_config_bytes(model_config):
    return json.dumps(model_config).encode("utf8")


def write_keras1(path, layers, *, keras_version=None, model_config=None):
    """Keras 1.x: ``save_weights`` by default (no version recorded), or with
    ``keras_version`` a whole-model file as ``save_model`` wrote it: root
    attributes ``keras_version`` and ``model_config``, the weights under
    ``model_weights``.

    Args:
        path: The file to write.
        layers: Entries from `keras1_layer` (or ``(name, [])``).
        keras_version: e.g. ``"1.2.2"``, for a whole-model file.
        model_config: The model's config (a JSON-able dict), whole-model
            files only.
    """
    with h5py.File(path, "w") as f:
        if keras_version is None:
            _write_layers(f, layers)
            return
        f.attrs["keras_version"] = keras_version.encode("utf8")
        if model_config is not None:
            f.attrs["model_config"] = _model_config_bytes(model_config)
        _write_layers(f.create_group("model_weights"), layers)


def write_keras2(
    path,
    layers,
    *,
    keras_version="2.1.6",
    backend="tensorflow",
    model_config=None,
    split_into=1,
):
    """Keras 2.x ``save_weights``, or with ``model_config`` a whole-model
    file (``save_model``): the weights under ``model_weights``, which
    carries ``keras_version`` and ``backend`` too.

    Args:
        path: The file to write.
        layers: Entries from `keras2_layer` (or ``(name, [])``).
        keras_version: Recorded at the root (and on ``model_weights``).
        backend: Likewise.
        model_config: The model's config, for a whole-model file.
        split_into: Store ``layer_names`` as ``layer_names0``,
            ``layer_names1``, ... in this many chunks, as Keras 2.1.5 on did
            for lists past the 64 KB attribute limit.
    """
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = keras_version.encode("utf8")
        f.attrs["backend"] = backend.encode("utf8")
        group = f
        if model_config is not None:
            f.attrs["model_config"] = _model_config_bytes(model_config)
            group = f.create_group("model_weights")
            group.attrs["keras_version"] = keras_version.encode("utf8")
            group.attrs["backend"] = backend.encode("utf8")
        _write_layers(group, layers, split_into)


def batch_norm_config(name, epsilon):
    """The config entry of a BatchNormalization in a Keras 1.x/2.x
    ``model_config``."""
    return {
        "class_name": "BatchNormalization",
        "config": {"name": name, "epsilon": epsilon},
    }


def sequential_config(layer_configs):
    """A Keras 1.x/2.0 Sequential's ``model_config``: a list of layer
    configs."""
    return {"class_name": "Sequential", "config": list(layer_configs)}
