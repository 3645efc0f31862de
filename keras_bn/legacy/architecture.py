"""A legacy model's architecture, read into one neutral form.

Keras 0.x wrote flat layer dicts whose ``"name"`` is the class (a Sequential's
``layers``; a Graph's ``input_config``, ``node_config``, ``nodes`` and
``output_config``, merges a property of the receiving node); Keras 1.x and
2.x wrote ``{"class_name", "config"}`` pairs (a Sequential's list of layers,
a functional ``Model``'s layers with ``inbound_nodes``), from 1.0.5 on with
``keras_version`` (2.x also ``backend``). `read_architecture` turns any of
them into an `Architecture`: inputs, nodes in an order where every node's
inputs come before it, and outputs.
"""

import dataclasses
import json
import re
import warnings
from pathlib import Path

from keras_bn.legacy.errors import LegacyFileError

__all__ = ["Architecture", "Node", "parse", "read_architecture"]


@dataclasses.dataclass
class Node:
    """One layer: its name, old class name, config (old argument names) and
    the names of the nodes or inputs it takes."""

    name: str
    class_name: str
    config: dict
    inbound: list


@dataclasses.dataclass
class Architecture:
    """kind: "sequential", "functional" or "graph"; generation: 0 (Keras
    0.x), 1 or 2 (Keras 2.x and tf-keras); inputs: ``[(name, shape,
    dtype)]`` without the batch axis."""

    path: str
    kind: str
    generation: int
    keras_version: str | None
    backend: str | None
    inputs: list
    nodes: list
    outputs: list


def _fail(path, message, layer=None, field=None):
    return LegacyFileError(message, path=path, layer=layer, field=field)


def read_architecture(path):
    """The `Architecture` in a ``to_json()`` or ``to_yaml()`` file (by its
    content: JSON first, else YAML)."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        from keras_bn.legacy.errors import LegacyFileNotFoundError

        raise LegacyFileNotFoundError("no such file.", path=path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise _fail(path, f"cannot read the architecture: {error}") from None
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        if path.lower().endswith(".json"):
            raise _fail(path, "not valid JSON (a to_json() file).") from None
        from keras_bn.legacy.safe_yaml import load_yaml

        config = load_yaml(text, path)
    if isinstance(config, str):
        # json.dump(model.to_json(), f), a common idiom, writes the JSON as
        # a JSON string: decoded once more.
        try:
            config = json.loads(config)
        except (ValueError, RecursionError):
            raise _fail(path, "a JSON string that is not a model's JSON.") from None
        warnings.warn(
            f"{path}: the architecture is a JSON string holding the model's "
            "JSON (json.dump of to_json()'s result); decoded it once more.",
            stacklevel=2,
        )
    return parse(config, path)


def parse(config, path, keras_version=None, backend=None):
    """The `Architecture` of a model config (a to_json()/to_yaml() dict, or
    a whole-model file's ``model_config``)."""
    if not isinstance(config, dict):
        raise _fail(
            path, f"expected a model config (a mapping), got {type(config).__name__}."
        )
    keras_version = config.get("keras_version", keras_version)
    backend = config.get("backend", backend)
    if "class_name" not in config:
        return _parse_keras0(config, path)
    class_name, body = config["class_name"], config.get("config")
    generation = _generation(keras_version, body)
    if class_name == "Sequential":
        layers = body.get("layers") if isinstance(body, dict) else body
        arch = _sequential(path, layers, generation, _pair)
    elif class_name in ("Model", "Functional"):
        arch = _functional(path, body, generation)
    else:
        raise _fail(
            path,
            f"model class {class_name!r}: expected Sequential, Model or Functional.",
            field="class_name",
        )
    arch.keras_version, arch.backend = keras_version, backend
    return arch


def _generation(keras_version, body):
    # ASCII digits only: "²".isdigit() is true, and int() refuses it.
    major = (
        re.match(r"[0-9]+", keras_version) if isinstance(keras_version, str) else None
    )
    if major is not None:
        return min(int(major.group()), 2)
    layers = body.get("layers", []) if isinstance(body, dict) else body or []
    names = {
        k
        for layer in layers
        if isinstance(layer, dict)
        for k in layer.get("config", {})
    }
    return (
        2 if names & {"units", "filters", "kernel_size", "data_format", "rate"} else 1
    )


def _pair(path, layer, index):
    if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
        raise _fail(
            path,
            f"layer {index}: expected {{'class_name', 'config'}}, got {layer!r:.80}.",
        )
    config = dict(layer["config"])
    name = config.get("name") or layer.get("name") or f"layer_{index}"
    return str(layer.get("class_name")), str(name), config


def _flat(path, layer, index):
    if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
        raise _fail(
            path,
            f"layer {index}: expected a Keras 0.x layer dict with its class in "
            f"'name', got {layer!r:.80}.",
        )
    config = {k: v for k, v in layer.items() if k != "name"}
    name = config.get("custom_name") or f"{layer['name'].lower()}_{index}"
    return layer["name"], f"{name}_{index}" if "custom_name" in config else name, config


def _input_shape(config):
    """The sample shape a first layer declares, or None."""
    for key in ("batch_input_shape", "batch_shape"):
        if config.get(key) is not None:
            return tuple(config[key])[1:]
    if config.get("input_shape") is not None:
        return tuple(config["input_shape"])
    dim, length = config.get("input_dim"), config.get("input_length")
    if dim is None:
        return None
    if "filter_length" in config:  # Convolution1D: steps, channels
        return (length, dim)
    if "input_length" in config and "output_dim" in config:
        # Embedding: input_dim is the vocabulary, the sample input_length ids.
        return (length,)
    return (dim,)


def _sequential(path, layers, generation, read):
    if not isinstance(layers, list) or not layers:
        raise _fail(path, "a Sequential model without layers.", field="layers")
    inputs, merged = _merged_models(path, layers, generation, read)
    if merged:
        nodes, previous = _chain(path, layers[1:], generation, read, merged[-1].name)
        nodes = merged + nodes
    else:
        nodes, previous = _chain(path, layers, generation, read, "input")
    if not inputs:
        first = read(path, layers[0], 0)[2]
        shape = _input_shape(first)
        if shape is None:
            raise _fail(
                path,
                "the first layer declares no input shape (input_shape, "
                "batch_input_shape or input_dim).",
                layer=nodes[0].name if nodes else None,
                field="input_shape",
            )
        dtype = "int32" if nodes and nodes[0].class_name == "Embedding" else "float32"
        inputs = [("input", shape, dtype)]
    return Architecture(
        path, "sequential", generation, None, None, inputs, nodes, [previous]
    )


def _chain(path, layers, generation, read, previous):
    """The nodes of a Sequential's ``layers``, each taking the one before;
    nested Sequential and functional models are laid out in place (their
    layers are the old file's layers)."""
    nodes = []
    for index, layer in enumerate(layers):
        inner = _nested_sequential(layer) if generation >= 1 else None
        if inner is not None:
            inner_nodes, previous = _chain(path, inner, generation, _pair, previous)
            nodes += inner_nodes
            continue
        class_name, name, config = read(path, layer, index)
        if class_name == "InputLayer":
            continue
        if class_name in ("Model", "Functional") and generation >= 1:
            inner_nodes, previous = _nested_functional(
                path, name, config, generation, previous
            )
            nodes += inner_nodes
            continue
        if class_name == "Merge" and isinstance(config.get("layers"), list):
            raise _fail(
                path,
                f"Layer '{name}': a Merge of models is read as the first layer "
                "of a Sequential only.",
                layer=name,
                field="layers",
            )
        nodes.append(Node(name, class_name, config, [previous]))
        previous = name
    return nodes, previous


def _nested_sequential(layer):
    """A nested Sequential's layers (Keras 1 wrote a list as its config,
    Keras 2 ``{"name", "layers"}``), else None."""
    if not isinstance(layer, dict) or layer.get("class_name") != "Sequential":
        return None
    config = layer.get("config")
    inner = config.get("layers") if isinstance(config, dict) else config
    return inner if isinstance(inner, list) and inner else None


def _merged_models(path, layers, generation, read):
    """Keras 1's ``Merge([model_a, model_b], mode=...)`` as the first layer of
    a Sequential: each model a branch with its own input, then the merge.
    Returns the inputs and the nodes (none where the first layer is
    another)."""
    first = layers[0]
    if not isinstance(first, dict) or first.get("class_name") != "Merge":
        return [], []
    config = first.get("config")
    if not isinstance(config, dict):
        return [], []
    branches = config.get("layers")
    if not isinstance(branches, list):
        return [], []
    _, name, settings = read(path, first, 0)
    inputs, nodes, ends = [], [], []
    for index, branch in enumerate(branches):
        if not isinstance(branch, dict) or branch.get("class_name") != "Sequential":
            raise _fail(
                path,
                f"Layer '{name}': branch {index} of a Merge of models is "
                f"{_short_repr(branch)} (expected a Sequential).",
                layer=name,
                field="layers",
            )
        inner = branch.get("config")
        inner = inner.get("layers") if isinstance(inner, dict) else inner
        branch_arch = _sequential(path, inner, generation, _pair)
        ((_, shape, dtype),) = branch_arch.inputs
        input_name = f"{name}_input_{index}"
        inputs.append((input_name, shape, dtype))
        for node in branch_arch.nodes:
            node.inbound = [input_name if i == "input" else i for i in node.inbound]
        nodes += branch_arch.nodes
        ends += branch_arch.outputs
    settings = {k: v for k, v in settings.items() if k != "layers"}
    nodes.append(Node(name, "Merge", settings, ends))
    return inputs, nodes


def _nested_functional(path, name, config, generation, previous):
    """A functional model used as a layer: its nodes, its one input taken
    from ``previous``; returns them and its one output."""
    inner = _functional(path, config, generation)
    if len(inner.inputs) != 1 or len(inner.outputs) != 1:
        raise _fail(
            path,
            f"Layer '{name}': a nested model with {len(inner.inputs)} inputs and "
            f"{len(inner.outputs)} outputs (one of each is rebuilt).",
            layer=name,
            field="config",
        )
    ((input_name, _, _),) = inner.inputs
    for node in inner.nodes:
        node.inbound = [previous if i == input_name else i for i in node.inbound]
    output = inner.outputs[0]
    return inner.nodes, previous if output == input_name else output


def _short_repr(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _inbound(path, name, inbound_nodes):
    if not inbound_nodes:
        return []
    if not isinstance(inbound_nodes, list) or len(inbound_nodes) != 1:
        raise _fail(
            path,
            f"Layer '{name}': called {len(inbound_nodes)} times (a shared "
            "layer); only layers called once are rebuilt.",
            layer=name,
            field="inbound_nodes",
        )
    out = []
    for item in inbound_nodes[0]:
        if (
            not isinstance(item, (list, tuple))
            or len(item) < 3
            or item[1:3] != type(item)([0, 0])
            and list(item[1:3]) != [0, 0]
        ):
            raise _fail(
                path,
                f"Layer '{name}': inbound {item!r:.80} (expected [layer, 0, 0]: "
                "one node, one tensor).",
                layer=name,
                field="inbound_nodes",
            )
        out.append(str(item[0]))
    return out


def _functional(path, body, generation):
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise _fail(path, "a functional model config without 'layers'.", field="layers")
    inputs, nodes = [], []
    for index, layer in enumerate(body["layers"]):
        class_name, name, config = _pair(path, layer, index)
        name = str(layer.get("name", name))
        if class_name == "InputLayer":
            shape = _input_shape(config)
            dtype = config.get("input_dtype") or config.get("dtype") or "float32"
            inputs.append((name, shape, dtype))
            continue
        nodes.append(
            Node(
                name,
                class_name,
                config,
                _inbound(path, name, layer.get("inbound_nodes")),
            )
        )
    ends = [str(item[0]) for item in body.get("output_layers", [])]
    order = [str(item[0]) for item in body.get("input_layers", [])]
    inputs.sort(key=lambda entry: order.index(entry[0]) if entry[0] in order else 0)
    return Architecture(
        path,
        "functional",
        generation,
        None,
        None,
        inputs,
        _ordered(path, nodes, inputs),
        ends,
    )


def _ordered(path, nodes, inputs):
    """``nodes`` so that every node comes after its inputs."""
    known = {name for name, _, _ in inputs}
    out, pending = [], list(nodes)
    while pending:
        ready = [n for n in pending if all(i in known for i in n.inbound)]
        if not ready:
            missing = sorted(
                {
                    i
                    for n in pending
                    for i in n.inbound
                    if i not in known and i not in {p.name for p in pending}
                }
            )
            raise _fail(
                path,
                f"nodes {[n.name for n in pending]} take inputs that are never "
                f"produced {missing} (or a cycle).",
                field="inbound_nodes",
            )
        out += ready
        known |= {n.name for n in ready}
        pending = [n for n in pending if n not in ready]
    return out


def _parse_keras0(config, path):
    kind = config.get("name")
    if kind == "Sequential":
        return _sequential(path, config.get("layers"), 0, _flat)
    if kind == "Graph":
        return _graph(path, config)
    raise _fail(
        path,
        f"a Keras 0.x model named {kind!r}: expected Sequential or Graph.",
        field="name",
    )


def _graph_inputs(path, where, entry):
    if entry.get("inputs"):
        return [str(i) for i in entry["inputs"]]
    if entry.get("input") is None:
        raise _fail(
            path,
            f"Graph {where} '{entry.get('name')}' has no input.",
            layer=entry.get("name"),
            field="input",
        )
    return [str(entry["input"])]


def _graph_merge(name, entry, inputs):
    return Node(
        f"{name}_merge",
        "Merge",
        {
            "mode": entry.get("merge_mode", "concat"),
            "concat_axis": entry.get("concat_axis", -1),
        },
        inputs,
    )


def _graph(path, config):
    """A Keras 0.x Graph: a node with several ``inputs`` merges them first
    (``merge_mode``, ``concat_axis``)."""
    layers = config.get("nodes")
    if not isinstance(layers, dict) or not isinstance(config.get("node_config"), list):
        raise _fail(
            path,
            "a Keras 0.x Graph without 'nodes' and 'node_config'.",
            field="node_config",
        )
    inputs = []
    for entry in config.get("input_config") or []:
        shape = entry.get("input_shape")
        dtype = "int32" if entry.get("dtype") == "int" else "float32"
        inputs.append(
            (str(entry["name"]), tuple(shape) if shape is not None else None, dtype)
        )
    nodes = []
    for entry in config["node_config"]:
        name = str(entry["name"])
        sources = _graph_inputs(path, "node", entry)
        if len(sources) > 1:
            nodes.append(_graph_merge(name, entry, sources))
            sources = [nodes[-1].name]
        layer = layers.get(name)
        if not isinstance(layer, dict) or "name" not in layer:
            raise _fail(
                path,
                f"Graph node '{name}' has no layer in 'nodes'.",
                layer=name,
                field="nodes",
            )
        settings = {k: v for k, v in layer.items() if k != "name"}
        nodes.append(Node(name, layer["name"], settings, sources))
    outputs = []
    for entry in config.get("output_config") or []:
        sources = _graph_inputs(path, "output", entry)
        if len(sources) > 1:
            nodes.append(_graph_merge(str(entry["name"]), entry, sources))
            sources = [nodes[-1].name]
        outputs.append(sources[0])
    return Architecture(path, "graph", 0, None, None, inputs, nodes, outputs)
