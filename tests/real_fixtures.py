"""The fixtures written by the real old Keras releases, and their Keras 3 twins.

``tests/fixtures/real/<release>-<backend>/`` holds what one old release wrote
(see ``scripts/real_fixtures/README.md``): per model a weights file, where the
release has them a whole-model file, the JSON and YAML architecture, and an
``.npz`` with an input batch ``x`` and the release's own test-phase
predictions ``y``. Each directory's ``manifest.json`` describes every model in
a neutral form, which :func:`build_model` turns into a Keras 3 model with the
same architecture and data layout, ready for ``keras_bn.legacy.load_weights``.

Usage::

    import real_fixtures as rf

    for fixture in rf.fixtures():              # one per (release, model)
        ok, why = rf.supports(fixture, "keras")
        model = rf.build_model(fixture, batch_normalization="keras_bn")
        x, y = rf.load_arrays(fixture)
        path = fixture.path("weights")         # or "model", "json", "yaml"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

import keras_bn

ROOT = Path(__file__).resolve().parent / "fixtures" / "real"

__all__ = [
    "ROOT",
    "Fixture",
    "release_dirs",
    "load_manifest",
    "fixtures",
    "supports",
    "build_model",
    "load_arrays",
    "stored_weight_shapes",
    "weighted_layers",
    "check_shapes",
    "write_with_a_lambda",
]


@dataclass(frozen=True)
class Fixture:
    """One model written by one old release."""

    directory: Path
    manifest: dict  # the whole release manifest
    entry: dict  # this model's entry in manifest["models"]

    @property
    def release(self) -> str:
        return self.manifest["release"]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @property
    def name(self) -> str:
        return self.entry["name"]

    @property
    def id(self) -> str:
        """A pytest id, e.g. ``keras-1.0.8-theano/dense``."""
        return f"{self.directory.name}/{self.name}"

    def has(self, kind: str) -> bool:
        return kind in self.entry["files"]

    def path(self, kind: str) -> Path:
        """``kind``: "weights", "model", "json", "yaml" or "npz"."""
        return self.directory / self.entry["files"][kind]

    def batch_norm_specs(self) -> list[dict]:
        """The model's BatchNormalization layers, in file order."""
        return [spec for spec in _layer_specs(self.entry) if _is_bn(spec)]


def release_dirs(root: Path = ROOT) -> list[Path]:
    """Every fixture directory (one per release and backend), sorted."""
    return sorted(p.parent for p in Path(root).glob("*/manifest.json"))


def load_manifest(directory: Path) -> dict:
    with open(Path(directory) / "manifest.json") as f:
        return json.load(f)


def fixtures(root: Path = ROOT) -> list[Fixture]:
    """Every (release, model) pair, in directory then manifest order."""
    out = []
    for directory in release_dirs(root):
        manifest = load_manifest(directory)
        for entry in manifest["models"]:
            out.append(Fixture(directory, manifest, entry))
    return out


def load_arrays(fixture: Fixture) -> tuple[np.ndarray, np.ndarray]:
    """The input batch and the old release's own predictions on it."""
    with np.load(fixture.path("npz")) as data:
        return data["x"], data["y"]


# ---------------------------------------------------------------------------


def _is_bn(spec: dict) -> bool:
    return spec["type"] == "batch_norm"


def _layer_specs(entry: dict) -> list[dict]:
    if "layers" in entry:
        return entry["layers"]
    return [node["layer"] for node in entry["graph"]["nodes"]]


def _input_rank(fixture: Fixture, spec: dict) -> int | None:
    """The sample rank (without the batch axis) a layer sees, for
    Sequential models; None where unknown."""
    if "layers" not in fixture.entry:
        return 1  # the graph/functional fixtures are all dense
    rank = len(fixture.entry["input_shape"])
    for layer in fixture.entry["layers"]:
        if layer is spec:
            return rank
        if layer["type"] == "flatten":
            rank = 1
    return None


def supports(fixture: Fixture, batch_normalization: str) -> tuple[bool, str]:
    """Whether ``build_model(fixture, batch_normalization)`` builds a model
    that computes what the old one did at inference; the reason if not."""
    if batch_normalization not in ("keras_bn", "keras"):
        raise ValueError(f"batch_normalization: {batch_normalization!r}")
    for spec in fixture.batch_norm_specs():
        if batch_normalization == "keras":
            if spec["mode"] == 1:
                return False, "mode 1 (samplewise): keras_bn only"
            if spec["mode"] == 2:
                return False, (
                    "mode 2 normalizes with the batch's statistics at test "
                    "time: keras_bn only"
                )
            if spec["axis"] is None and _input_rank(fixture, spec) != 1:
                return False, (
                    "per-activation statistics over a sample of rank > 1: "
                    "keras_bn only (Keras 3's layer takes one axis)"
                )
    return True, ""


def _bn_layer(spec: dict, batch_normalization: str, name: str | None):
    kw = {"name": name} if name else {}
    if batch_normalization == "keras_bn":
        mode = spec["mode"]
        if mode == 1:
            kw["samplewise_epsilon_in_root"] = (
                spec.get("samplewise_std") == "sqrt(var + epsilon)"
            )
        return keras_bn.BatchNormalization(
            epsilon=spec["epsilon"],
            mode=mode,
            momentum=spec["momentum"],
            axis=spec["axis"],
            **kw,
        )
    axis = -1 if spec["axis"] is None else spec["axis"]
    return keras.layers.BatchNormalization(
        axis=axis, epsilon=spec["epsilon"], momentum=spec["momentum"], **kw
    )


def _layer(spec: dict, batch_normalization: str, name: str | None = None):
    kw = {"name": name} if name else {}
    t = spec["type"]
    L = keras.layers
    if t == "batch_norm":
        return _bn_layer(spec, batch_normalization, name)
    if t == "dense":
        return L.Dense(
            spec["units"],
            activation=spec["activation"],
            use_bias=spec["use_bias"],
            **kw,
        )
    if t == "activation":
        return L.Activation(spec["activation"], **kw)
    if t == "flatten":
        return L.Flatten(data_format=spec.get("data_format") or "channels_last", **kw)
    if t == "conv2d":
        return L.Conv2D(
            spec["filters"],
            tuple(spec["kernel_size"]),
            strides=tuple(spec["strides"]),
            padding=spec["padding"],
            data_format=spec["data_format"],
            activation=spec["activation"],
            **kw,
        )
    if t == "conv1d":
        return L.Conv1D(
            spec["filters"],
            spec["kernel_size"],
            strides=spec["strides"],
            padding=spec["padding"],
            data_format="channels_last",
            activation=spec["activation"],
            **kw,
        )
    if t == "max_pool2d":
        return L.MaxPooling2D(
            tuple(spec["pool_size"]),
            strides=tuple(spec["strides"]),
            padding=spec["padding"],
            data_format=spec["data_format"],
            **kw,
        )
    if t == "concatenate":
        return L.Concatenate(axis=spec["axis"], **kw)
    raise ValueError(f"unknown layer type {t!r}")


def _channels_first_layers(spec: dict, batch_normalization: str) -> list:
    """A channels-first conv2d or max_pool2d as channels-last between two
    transposes: the same function and the same weights (Keras 3 stores
    Conv2D kernels as (rows, cols, in, out) whatever the data_format)."""
    spec = dict(spec, data_format="channels_last")
    return [
        keras.layers.Permute((2, 3, 1)),
        _layer(spec, batch_normalization),
        keras.layers.Permute((3, 1, 2)),
    ]


def build_model(
    fixture: Fixture,
    batch_normalization: str = "keras_bn",
    channels_first: str = "auto",
):
    """The Keras 3 equivalent of the fixture's model, built, with fresh
    weights. ``batch_normalization``: "keras_bn" (keras_bn.BatchNormalization
    with the old mode, epsilon, momentum and axis) or "keras"
    (keras.layers.BatchNormalization with the old axis, epsilon and
    momentum). Mode-2 models build (as mode 0, for shape checks) but do not
    compute what the old ones did: see :func:`supports`.

    ``channels_first``: "native" builds channels-first Conv2D and
    MaxPooling2D layers with ``data_format="channels_first"`` (JAX and
    PyTorch run them on CPU; TensorFlow's CPU kernels do not exist);
    "transpose" builds each as the channels-last layer between two
    ``Permute`` layers (no weights; everything else, BatchNormalization
    included, stays channels-first); "auto" (default) is "transpose" on the
    TensorFlow backend and "native" elsewhere."""
    if batch_normalization not in ("keras_bn", "keras"):
        raise ValueError(f"batch_normalization: {batch_normalization!r}")
    if channels_first == "auto":
        transpose = keras.backend.backend() == "tensorflow"
    elif channels_first in ("native", "transpose"):
        transpose = channels_first == "transpose"
    else:
        raise ValueError(f"channels_first: {channels_first!r}")
    entry = fixture.entry
    if "layers" in entry:
        layers = [keras.Input(tuple(entry["input_shape"]))]
        for spec in entry["layers"]:
            if (
                transpose
                and spec["type"] in ("conv2d", "max_pool2d")
                and spec["data_format"] == "channels_first"
            ):
                layers += _channels_first_layers(spec, batch_normalization)
            else:
                layers.append(_layer(spec, batch_normalization))
        return keras.Sequential(layers, name=entry["name"])
    graph = entry["graph"]
    tensors = {}
    inputs = []
    for name, shape in sorted(graph["inputs"].items()):
        tensors[name] = keras.Input(tuple(shape), name=name)
        inputs.append(tensors[name])
    for node in graph["nodes"]:
        layer = _layer(node["layer"], batch_normalization, node["name"])
        args = [tensors[i] for i in node["inputs"]]
        tensors[node["name"]] = layer(args if len(args) > 1 else args[0])
    outputs = [tensors[o] for o in graph["outputs"]]
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=entry["name"],
    )


# ---------------------------------------------------------------------------
# Shape checks, modulo the kernels' layout (which the loader converts).


def stored_weight_shapes(fixture: Fixture) -> list[list[tuple[int, ...]]]:
    """The shapes the weights file holds, per layer that holds arrays, in
    file order. A Keras 0.x Graph file holds one flat list; it is split here
    by the graph's node order (Dense: 2 arrays, BatchNormalization: 4, or 2
    in 0.2.0 Graph files, which hold no running statistics)."""
    groups = [g for g in fixture.entry["stored"]["groups"] if g["weights"]]
    shapes = [[tuple(s) for _, s in g["weights"]] for g in groups]
    if fixture.entry["kind"] != "graph":
        return shapes
    flat = shapes[0]
    specs = _layer_specs(fixture.entry)
    per_layer = {"dense": 2, "batch_norm": 4, "conv2d": 2, "conv1d": 2}
    if len(flat) != sum(per_layer.get(s["type"], 0) for s in specs):
        # Keras 0.x Graph files before 0.3.0 hold only gamma and beta.
        per_layer["batch_norm"] = 2
    out = []
    for spec in specs:
        n = per_layer.get(spec["type"], 0)
        if n:
            out.append(flat[:n])
            flat = flat[n:]
    if flat:
        raise ValueError(f"{fixture.id}: {len(flat)} arrays left over")
    return out


def weighted_layers(model) -> list:
    """The model's layers that hold weights, in order (nested flattened)."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out += weighted_layers(layer)
        elif layer.weights:
            out.append(layer)
    return out


def _same_modulo_layout(a: tuple, b: tuple) -> bool:
    squeeze = sorted(d for d in a if d != 1), sorted(d for d in b if d != 1)
    return int(np.prod(a)) == int(np.prod(b)) and squeeze[0] == squeeze[1]


def check_shapes(fixture: Fixture, model) -> list[str]:
    """Mismatches between the file's arrays and the model's weights (empty if
    they fit): the number of weighted layers, and per layer the number and
    shapes of the arrays, kernels compared modulo their layout."""
    stored = stored_weight_shapes(fixture)
    layers = weighted_layers(model)
    problems = []
    if len(stored) != len(layers):
        problems.append(
            f"{len(stored)} layers with arrays in the file, "
            f"{len(layers)} weighted layers in the model"
        )
    for shapes, layer in zip(stored, layers):
        mine = [tuple(w.shape) for w in layer.weights]
        if len(shapes) == 2 and len(mine) == 4 and "bn" in layer.name:
            mine = mine[:2]  # gamma and beta only (Keras 0.2.0 Graph)
        if len(shapes) != len(mine):
            problems.append(f"{layer.name}: {len(shapes)} arrays vs {len(mine)}")
            continue
        for s, m in zip(shapes, mine):
            if s != m and not _same_modulo_layout(s, m):
                problems.append(f"{layer.name}: stored {s} vs {m}")
    return problems


def write_with_a_lambda(destination):
    """Keras 1.2.2's two-branch functional model with a ``Lambda`` layer
    named ``scale`` after one branch, as Keras 1 wrote one (marshalled
    bytecode in its config; here bytes that would fail to run, and must never
    be run). It goes with that fixture's weights, ``lambda_weights.h5``."""
    config = json.loads(
        (ROOT / "keras-1.2.2-tensorflow" / "functional.json").read_text()
    )
    layers = config["config"]["layers"]
    merge = next(i for i, layer in enumerate(layers) if layer["name"] == "cat")
    layers.insert(
        merge,
        {
            "class_name": "Lambda",
            "name": "scale",
            "config": {
                "name": "scale",
                "trainable": True,
                "function": ["4wEAAAAAAAAA never run", None, None],
                "function_type": "lambda",
                "output_shape": None,
                "output_shape_type": "raw",
                "arguments": {},
            },
            "inbound_nodes": [[["a_act", 0, 0]]],
        },
    )
    layers[merge + 1]["inbound_nodes"] = [[["scale", 0, 0], ["b_bn", 0, 0]]]
    destination.write_text(json.dumps(config))
