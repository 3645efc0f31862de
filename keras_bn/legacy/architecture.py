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
import heapq
import json
import re
import warnings
from pathlib import Path

from keras_bn.legacy.errors import LegacyFileError
from keras_bn.legacy.errors import short_repr as _short_repr
from keras_bn.legacy.releases import version_tuple

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
    depth: int = 0


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
    if keras_version is not None and (
        not isinstance(keras_version, str) or version_tuple(keras_version) is None
    ):
        raise _fail(
            path,
            f"keras_version: expected a version such as '1.2.2', got "
            f"{_short_repr(keras_version)}.",
            field="keras_version",
        )
    if backend is not None and not isinstance(backend, str):
        raise _fail(
            path,
            f"backend: expected text, got {_short_repr(backend)}.",
            field="backend",
        )
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
            f"model class {_short_repr(class_name)}: expected Sequential, Model "
            "or Functional.",
            field="class_name",
        )
    arch.keras_version, arch.backend = keras_version, backend
    return _checked(arch)


# What is rebuilt at most (docs/legacy_models.md): Keras builds a model by
# recursion over its depth.
MOST_LAYERS = 20000
DEEPEST_CHAIN = 2000


def _checked(arch):
    """Names unique, and no more layers or depth than `MOST_LAYERS` and
    `DEEPEST_CHAIN`."""
    seen = set()
    for name in [name for name, _, _ in arch.inputs] + [n.name for n in arch.nodes]:
        if name in seen:
            raise _fail(
                arch.path,
                f"two layers are named {_short_repr(name)}: layer names must be "
                "unique.",
                layer=name,
                field="name",
            )
        seen.add(name)
    if len(arch.nodes) > MOST_LAYERS:
        raise _fail(
            arch.path,
            f"{len(arch.nodes)} layers: at most {MOST_LAYERS} are rebuilt.",
            field="layers",
        )
    depth = {name: 0 for name, _, _ in arch.inputs}
    for node in arch.nodes:  # in an order where inputs come first
        depth[node.name] = 1 + max((depth.get(i, 0) for i in node.inbound), default=0)
    deepest = max(depth.values(), default=0)
    if deepest > DEEPEST_CHAIN:
        raise _fail(
            arch.path,
            f"a chain of {deepest} layers: at most {DEEPEST_CHAIN} deep are rebuilt.",
            field="layers",
        )
    arch.depth = deepest
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
        for layer in (layers if isinstance(layers, list) else [])
        if isinstance(layer, dict) and isinstance(layer.get("config"), dict)
        for k in layer["config"]
    }
    return (
        2 if names & {"units", "filters", "kernel_size", "data_format", "rate"} else 1
    )


def _pair(path, layer, index):
    if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
        raise _fail(
            path,
            f"layer {index}: expected {{'class_name', 'config'}}, got "
            f"{_short_repr(layer)}.",
        )
    config = dict(layer["config"])
    name = config.get("name") or layer.get("name") or f"layer_{index}"
    class_name = layer.get("class_name")
    if not isinstance(name, str) or not isinstance(class_name, str):
        raise _fail(
            path,
            f"layer {index}: its class_name and name must be text, got "
            f"{_short_repr(class_name)} and {_short_repr(name)}.",
            field="name",
        )
    return class_name, name, config


def _flat(path, layer, index):
    if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
        raise _fail(
            path,
            f"layer {index}: expected a Keras 0.x layer dict with its class in "
            f"'name', got {_short_repr(layer)}.",
        )
    config = {k: v for k, v in layer.items() if k != "name"}
    custom = config.get("custom_name")
    name = custom if isinstance(custom, str) else f"{layer['name'].lower()}_{index}"
    return layer["name"], f"{name}_{index}" if "custom_name" in config else name, config


# The largest input dimension read: a declared shape never allocates by
# itself, but nothing legitimate comes near it.
_LARGEST_DIMENSION = 2**31 - 1


def _input_shape(config, path=None, layer=None):
    """The sample shape a first layer declares, or None; every dimension a
    positive integer or None (refused otherwise)."""
    shape, field = None, None
    for key in ("batch_input_shape", "batch_shape"):
        if config.get(key) is not None:
            shape, field = config[key], key
            if isinstance(shape, (list, tuple)):
                shape = tuple(shape)[1:]
            break
    else:
        if config.get("input_shape") is not None:
            shape, field = config["input_shape"], "input_shape"
        else:
            dim, length = config.get("input_dim"), config.get("input_length")
            if dim is None:
                return None
            field = "input_dim"
            if "filter_length" in config:  # Convolution1D: steps, channels
                shape = (length, dim)
            elif "input_length" in config and "output_dim" in config:
                # Embedding: input_dim is the vocabulary, the sample
                # input_length ids.
                shape = (length,)
            else:
                shape = (dim,)
    if not isinstance(shape, (list, tuple)) or not all(
        d is None
        or (
            isinstance(d, int)
            and not isinstance(d, bool)
            and 0 < d <= _LARGEST_DIMENSION
        )
        for d in shape
    ):
        raise _fail(
            path,
            f"{field}: expected a list of positive integers (or null), got "
            f"{_short_repr(config[field] if field in config else shape)}.",
            layer=layer,
            field=field,
        )
    return tuple(shape)


_DTYPES = {"float16", "float32", "float64", "bfloat16", "int8", "int16",
           "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}  # fmt: skip


def _dtype(path, layer, value):
    """An input's dtype: one of `_DTYPES` (Keras 0.x wrote "int")."""
    if isinstance(value, str):
        value = {"int": "int32", "float": "float32"}.get(value, value)
        if value in _DTYPES:
            return value
    raise _fail(
        path,
        f"input_dtype: expected one of {sorted(_DTYPES)}, got {_short_repr(value)}.",
        layer=layer,
        field="input_dtype",
    )


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
        shape = _first_declared_shape(path, layers, generation, read)
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


def _first_declared_shape(path, layers, generation, read):
    """The sample shape a Sequential's first layer declares, or None; a
    nested Sequential's first layer (Keras 1 and 2 let a Sequential start
    with one) declares it, a nested functional model's one input too."""
    while generation >= 1 and _nested_sequential(layers[0]) is not None:
        layers, read = _nested_sequential(layers[0]), _pair
    class_name, name, config = read(path, layers[0], 0)
    if class_name in ("Model", "Functional") and generation >= 1:
        inner = _functional(path, config, generation)
        return inner.inputs[0][1] if len(inner.inputs) == 1 else None
    return _input_shape(config, path, name)


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


def _inbound(path, name, inbound_nodes):
    if not inbound_nodes:
        # Keras lists a functional model's layers as they were called: one
        # that takes nothing (other than an InputLayer) is a damaged file.
        raise _fail(
            path,
            f"Layer '{name}': no inbound node; every layer but an InputLayer "
            "takes an input.",
            layer=name,
            field="inbound_nodes",
        )
    if not isinstance(inbound_nodes, list) or not isinstance(inbound_nodes[0], list):
        raise _fail(
            path,
            f"Layer '{name}': inbound_nodes {_short_repr(inbound_nodes)} (expected "
            "[[[layer, 0, 0], ...]]).",
            layer=name,
            field="inbound_nodes",
        )
    if len(inbound_nodes) != 1:
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
            or not isinstance(item[0], str)
            or list(item[1:3]) != [0, 0]
        ):
            raise _fail(
                path,
                f"Layer '{name}': inbound {_short_repr(item)} (expected [layer, 0, 0]: "
                "one node, one tensor).",
                layer=name,
                field="inbound_nodes",
            )
        out.append(item[0])
    return out


def _functional(path, body, generation):
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise _fail(path, "a functional model config without 'layers'.", field="layers")
    if not body["layers"]:
        raise _fail(path, "a functional model without layers.", field="layers")
    inputs, nodes = [], []
    for index, layer in enumerate(body["layers"]):
        class_name, name, config = _pair(path, layer, index)
        if isinstance(layer.get("name"), str):
            name = layer["name"]
        if class_name == "InputLayer":
            shape = _input_shape(config, path, name)
            dtype = config.get("input_dtype") or config.get("dtype") or "float32"
            inputs.append((name, shape, _dtype(path, name, dtype)))
            continue
        nodes.append(
            Node(
                name,
                class_name,
                config,
                _inbound(path, name, layer.get("inbound_nodes")),
            )
        )
    known = {name for name, _, _ in inputs} | {node.name for node in nodes}
    ends = _endpoints(path, body, "output_layers", known)
    order = _endpoints(path, body, "input_layers", known)
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


def _endpoints(path, body, key, known):
    """The layer names of ``input_layers`` or ``output_layers``
    (``[[name, node, tensor], ...]``), each one of ``known``."""
    value = body.get(key, [])
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = [value]  # tf.keras wrote a single one as [name, 0, 0]
    if not isinstance(value, list) or not all(
        isinstance(item, (list, tuple)) and item and isinstance(item[0], str)
        for item in value
    ):
        raise _fail(
            path,
            f"{key}: expected a list of [layer name, 0, 0], got {_short_repr(value)}.",
            field=key,
        )
    names = [item[0] for item in value]
    missing = [name for name in names if name not in known]
    if missing or (key == "output_layers" and not names):
        raise _fail(
            path,
            f"{key}: {_short_repr(missing or names)} name no layer of the model.",
            field=key,
        )
    return names


def _ordered(path, nodes, inputs):
    """``nodes`` so that every node comes after its inputs (in linear time:
    an architecture may hold thousands)."""
    produced = {name for name, _, _ in inputs} | {node.name for node in nodes}
    missing = sorted({i for node in nodes for i in node.inbound} - produced)
    if missing:
        raise _fail(
            path,
            f"layers take inputs that no layer produces: {_short_repr(missing)}.",
            field="inbound_nodes",
        )
    # Kahn's algorithm, the file's order kept among the layers that are
    # ready (a heap of positions).
    waiting = [len(set(node.inbound)) for node in nodes]
    takers = {}
    for index, node in enumerate(nodes):
        for name in set(node.inbound):
            takers.setdefault(name, []).append(index)
    heap = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(heap)
    for name, _, _ in inputs:
        for index in takers.get(name, []):
            waiting[index] -= 1
            if waiting[index] == 0:
                heapq.heappush(heap, index)
    out, seen = [], set()
    while heap:
        index = heapq.heappop(heap)
        out.append(nodes[index])
        seen.add(id(nodes[index]))
        for taker in takers.get(nodes[index].name, []):
            waiting[taker] -= 1
            if waiting[taker] == 0:
                heapq.heappush(heap, taker)
    if len(out) != len(nodes):
        stuck = [node.name for node in nodes if id(node) not in seen]
        raise _fail(
            path,
            f"layers {_short_repr(stuck)} take their own outputs (a cycle).",
            field="inbound_nodes",
        )
    return out


def _parse_keras0(config, path):
    kind = config.get("name")
    if kind == "Sequential":
        return _checked(_sequential(path, config.get("layers"), 0, _flat))
    if kind == "Graph":
        return _checked(_graph(path, config))
    raise _fail(
        path,
        f"a Keras 0.x model named {_short_repr(kind)}: expected Sequential or Graph.",
        field="name",
    )


def _entries(path, entries, field):
    """A Keras 0.x Graph's list of ``{"name": ..., ...}`` entries."""
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str)
        for entry in entries
    ):
        raise _fail(
            path,
            f"{field}: expected a list of entries with a text 'name', got "
            f"{_short_repr(entries)}.",
            field=field,
        )
    return entries


def _graph_inputs(path, where, entry):
    if entry.get("inputs"):
        inputs = entry["inputs"]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise _fail(
                path,
                f"Graph {where} '{entry['name']}': inputs {_short_repr(inputs)} "
                "(expected a list of names).",
                layer=entry["name"],
                field="inputs",
            )
        return inputs
    if not isinstance(entry.get("input"), str):
        raise _fail(
            path,
            f"Graph {where} '{entry.get('name')}' has no input.",
            layer=entry.get("name"),
            field="input",
        )
    return [entry["input"]]


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
    for entry in _entries(path, config.get("input_config") or [], "input_config"):
        name = entry["name"]
        shape = _input_shape(entry, path, name)
        dtype = "int32" if entry.get("dtype") == "int" else "float32"
        inputs.append((name, shape, dtype))
    nodes = []
    for entry in _entries(path, config["node_config"], "node_config"):
        name = entry["name"]
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
    for entry in _entries(path, config.get("output_config") or [], "output_config"):
        sources = _graph_inputs(path, "output", entry)
        if len(sources) > 1:
            nodes.append(_graph_merge(str(entry["name"]), entry, sources))
            sources = [nodes[-1].name]
        outputs.append(sources[0])
    return Architecture(path, "graph", 0, None, None, inputs, nodes, outputs)
