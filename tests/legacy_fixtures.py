"""Writers of legacy Keras HDF5 weight files, one function per layout.

Each writes what that Keras version's ``save_weights`` (or ``save_model``)
wrote, with the group, dataset and attribute names and types that
docs/legacy.md describes: text attributes as bytes, and
lists of names as arrays of fixed-length bytes, as old h5py stored them.
The tests (and the legacy-weights notebook) build fixture files with them
in a temporary directory; nothing binary is committed.

Layers are given as ``(name, [(weight name, array), ...])`` pairs, in the
model's order, with an empty list for layers without weights.
"""

import dataclasses
import json
from collections.abc import Callable

import h5py
import numpy as np

__all__ = [
    "EXAMPLES",
    "Example",
    "batch_norm_config",
    "example_arrays",
    "keras1_layer",
    "keras2_layer",
    "sequential_config",
    "write_keras0_graph",
    "write_keras0_sequential",
    "write_keras1",
    "write_keras2",
    "write_wrapped_batch_norm",
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


# -- one small model in every layout ---------------------------------------------
#
# Dense(4 -> 3), Activation, BatchNormalization(3): the same arrays written as
# each Keras version wrote them. ``form`` says how that version normalized
# with the BatchNormalization's fourth array ``a`` (None: no running
# statistics saved): "std" (x - m) / (a + eps), "variance"
# (x - m) / sqrt(a + eps), "theano_variance" (x - m) / (sqrt(a) + eps).


def example_arrays(rng):
    """Random arrays for the example model: ``W`` (4, 3), ``b``, ``gamma``,
    ``beta``, ``mean`` and ``fourth`` (positive) of shape (3,)."""
    return {
        "W": rng.normal(size=(4, 3)),
        "b": rng.normal(size=3),
        "gamma": rng.uniform(0.5, 1.5, 3),
        "beta": rng.normal(size=3),
        "mean": rng.normal(size=3),
        "fourth": rng.uniform(0.5, 2.0, 3),
    }


def _keras1_layers(a, backend):
    return [
        keras1_layer("dense_1", {"W": a["W"], "b": a["b"]}, backend=backend),
        ("activation_1", []),
        keras1_layer(
            "batchnormalization_1",
            {
                "gamma": a["gamma"],
                "beta": a["beta"],
                "running_mean": a["mean"],
                "running_std": a["fourth"],
            },
            backend=backend,
        ),
    ]


def _keras2_layers(a):
    return [
        keras2_layer("dense_1", {"kernel": a["W"], "bias": a["b"]}),
        ("activation_1", []),
        keras2_layer(
            "batch_normalization_1",
            {
                "gamma": a["gamma"],
                "beta": a["beta"],
                "moving_mean": a["mean"],
                "moving_variance": a["fourth"],
            },
        ),
    ]


def _config(bn_name, epsilon):
    return sequential_config(
        [
            {"class_name": "Dense", "config": {"name": "dense_1"}},
            {"class_name": "Activation", "config": {"name": "activation_1"}},
            batch_norm_config(bn_name, epsilon),
        ]
    )


@dataclasses.dataclass(frozen=True)
class Example:
    """One layout of the example model.

    Attributes:
        name: Short identifier.
        write: ``write(path, arrays)`` writes the file.
        format: What `keras_bn.legacy.read_weights` should report.
        keras_version: Likewise (None: not recorded).
        form: How that Keras normalized with the fourth array; None where the
            file holds no running statistics.
        epsilon: The source layer's epsilon.
        load_kwargs: What `keras_bn.legacy.load_weights` needs besides the
            file.
    """

    name: str
    write: Callable
    format: str
    keras_version: str | None
    form: str | None
    epsilon: float
    load_kwargs: dict = dataclasses.field(default_factory=dict)


def _sequential0(path, a, statistics=True):
    bn = [a["gamma"], a["beta"]] + ([a["mean"], a["fourth"]] if statistics else [])
    write_keras0_sequential(path, [[a["W"], a["b"]], [], bn])


def _graph0(path, a, statistics=True):
    bn = [a["gamma"], a["beta"]] + ([a["mean"], a["fourth"]] if statistics else [])
    write_keras0_graph(path, [a["W"], a["b"], *bn])


EXAMPLES = [
    Example("keras0_sequential", _sequential0, "keras0_sequential", None, "std", 1e-6),
    Example(
        "keras0_sequential_0.1",
        lambda p, a: _sequential0(p, a, statistics=False),
        "keras0_sequential",
        None,
        None,
        1e-6,
    ),
    Example("keras0_graph", _graph0, "keras0_graph", None, "std", 1e-6),
    Example(
        "keras0_graph_0.2",
        lambda p, a: _graph0(p, a, statistics=False),
        "keras0_graph",
        None,
        None,
        1e-6,
    ),
    Example(
        "keras1_weights_std",
        lambda p, a: write_keras1(p, _keras1_layers(a, "theano")),
        "keras1",
        None,
        "std",
        1e-6,
        {"running_std": "std"},
    ),
    Example(
        "keras1_weights_variance",
        lambda p, a: write_keras1(p, _keras1_layers(a, "tensorflow")),
        "keras1",
        None,
        "variance",
        1e-5,
        {"running_std": "variance", "epsilon": 1e-5},
    ),
    Example(
        "keras1_weights_1.0.7_theano",
        lambda p, a: write_keras1(p, _keras1_layers(a, "theano")),
        "keras1",
        None,
        "theano_variance",
        1e-6,
        {"keras_version": "1.0.7"},
    ),
    Example(
        "keras1_model_1.0.6_theano",
        lambda p, a: write_keras1(
            p,
            _keras1_layers(a, "theano"),
            keras_version="1.0.6",
            model_config=_config("batchnormalization_1", 1e-4),
        ),
        "keras1",
        "1.0.6",
        "std",
        1e-4,
    ),
    Example(
        "keras1_model_1.0.7_theano",
        lambda p, a: write_keras1(
            p,
            _keras1_layers(a, "theano"),
            keras_version="1.0.7",
            model_config=_config("batchnormalization_1", 1e-4),
        ),
        "keras1",
        "1.0.7",
        "theano_variance",
        1e-4,
    ),
    Example(
        "keras1_model_1.2.2",
        lambda p, a: write_keras1(
            p,
            _keras1_layers(a, "tensorflow"),
            keras_version="1.2.2",
            model_config=_config("batchnormalization_1", 0.01),
        ),
        "keras1",
        "1.2.2",
        "variance",
        0.01,
    ),
    Example(
        "keras2_weights",
        lambda p, a: write_keras2(p, _keras2_layers(a), keras_version="2.0.8"),
        "keras2",
        "2.0.8",
        "variance",
        1e-3,
    ),
    Example(
        "keras2_weights_split",
        lambda p, a: write_keras2(
            p, _keras2_layers(a), keras_version="2.2.4", split_into=3
        ),
        "keras2",
        "2.2.4",
        "variance",
        1e-3,
    ),
    Example(
        "keras2_model",
        lambda p, a: write_keras2(
            p,
            _keras2_layers(a),
            keras_version="2.2.4",
            model_config=_config("batch_normalization_1", 0.02),
        ),
        "keras2",
        "2.2.4",
        "variance",
        0.02,
    ),
]


def write_wrapped_batch_norm(directory, rng, epsilon):
    """A Keras 2.2.4 Sequential of one TimeDistributed(BatchNormalization)
    with its own epsilon: its JSON, its weights file and its whole-model
    file, arrays named as Keras 2.2.4 named a wrapped layer's
    (``<wrapper>/<weight>:0``)."""
    config = {
        "class_name": "Sequential", "keras_version": "2.2.4", "backend": "tensorflow",
        "config": {"name": "s", "layers": [{
            "class_name": "TimeDistributed",
            "config": {"name": "td", "batch_input_shape": [None, 4, 5], "layer": {
                "class_name": "BatchNormalization",
                "config": {"name": "bn", "axis": -1, "momentum": 0.99,
                           "epsilon": epsilon, "center": True, "scale": True}}}}]},
    }  # fmt: skip
    arrays = {
        "gamma": rng.uniform(0.5, 1.5, 5),
        "beta": rng.normal(size=5),
        "moving_mean": rng.normal(size=5),
        "moving_variance": rng.uniform(1e-3, 2e-3, 5),  # epsilon shows
    }
    layer = keras2_layer("td", {k: v.astype("float32") for k, v in arrays.items()})
    json_path = directory / "td.json"
    json_path.write_text(json.dumps(config))
    write_keras2(directory / "td.weights.h5", [layer], keras_version="2.2.4")
    write_keras2(
        directory / "td.model.h5", [layer], keras_version="2.2.4", model_config=config
    )
    return arrays
