"""Hostile architectures: `keras_bn.legacy.load_model` fails only with
`LegacyFileError`, checks before it allocates, and converts the weights with
the configs it built the model from.

Every case edits one field of a file a real release wrote
(``tests/fixtures/real/``) and loads it with its weights; the refusal must
name the field (and the layer, where one is concerned) in a message of
bounded length. ``scripts/fuzz_architectures.py`` runs hundreds of such
edits at random, under a memory limit.
"""

import copy
import json
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from keras_bn import legacy

REAL = Path(__file__).resolve().parent / "fixtures" / "real"
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
DENSE = REAL / "keras-1.2.2-tensorflow"
GRAPH = REAL / "keras-0.3.3-theano"


def _load(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return legacy.load_model(path, **kwargs)


def _edited(tmp_path, source, edit, name="edited.json"):
    config = json.loads(source.read_text())
    edit(config)
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def _first(key, value):
    def edit(config):
        config["config"][0]["config"][key] = value

    return edit


def _inputs(key, value):
    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "InputLayer":
                layer["config"][key] = value

    return edit


def _body(key, value):
    return lambda config: config["config"].__setitem__(key, value)


def _duplicate_name(config):
    config["config"][1]["config"]["name"] = config["config"][0]["config"]["name"]


def _inbound(config):
    config["config"]["layers"][1]["inbound_nodes"] = 7


def _inbound_item(index, value):
    """The first inbound item of layer 1 with its node (1) or tensor (2)
    index set: a layer fed by another call, or another output, of a layer."""

    def edit(config):
        config["config"]["layers"][1]["inbound_nodes"][0][0][index] = value

    return edit


def _merge_first(config_value):
    """The first layer replaced by a Keras 1 Merge whose config is
    ``config_value``."""

    def edit(config):
        config["config"][0] = {"class_name": "Merge", "config": config_value}

    return edit


def _merge_of_models_second(config):
    branch = {"class_name": "Sequential", "config": config["config"][:1]}
    settings = {"name": "merge", "mode": "concat", "layers": [branch, branch]}
    merge = {"class_name": "Merge", "config": settings}
    config["config"].insert(1, merge)


def _nested_model_with_two_inputs(config):
    """A functional model with a second (unused) input, as layer 1 of the
    Sequential."""
    inner = json.loads((DENSE / "functional.json").read_text())["config"]
    inner["layers"].insert(1, {
        "name": "x2", "class_name": "InputLayer", "inbound_nodes": [],
        "config": {"name": "x2", "batch_input_shape": [None, 6]},
    })  # fmt: skip
    inner["input_layers"].append(["x2", 0, 0])
    config["config"].insert(1, {"class_name": "Model", "config": inner})


def _nested_model_with_two_outputs(config):
    """A functional model with a second output, as layer 1 of the
    Sequential: which of them the next layer takes is not told."""
    inner = json.loads((DENSE / "functional.json").read_text())["config"]
    inner["output_layers"].append(["a_act", 0, 0])
    config["config"].insert(1, {"class_name": "Model", "config": inner})


def _inbound_of(index, inbound_nodes):
    def edit(config):
        config["config"]["layers"][index]["inbound_nodes"] = inbound_nodes

    return edit


SEQUENTIAL = [
    ("version-letters", lambda c: c.__setitem__("keras_version", "1x.2"),
     "keras_version", None),
    ("version-superscript", lambda c: c.__setitem__("keras_version", "²"),
     "keras_version", None),
    ("config-without-layers", lambda c: c.__setitem__("config", {"name": "s"}),
     "layers", None),
    ("input-shape-int", _first("batch_input_shape", 6), "batch_input_shape", "dense_1"),
    ("input-shape-negative", _first("batch_input_shape", [None, -6]),
     "batch_input_shape", "dense_1"),
    ("input-shape-zero", _first("batch_input_shape", [None, 0]),
     "batch_input_shape", "dense_1"),
    ("input-shape-text", _first("batch_input_shape", [None, "a"]),
     "batch_input_shape", "dense_1"),
    ("input-shape-nan", _first("batch_input_shape", [None, float("nan")]),
     "batch_input_shape", "dense_1"),
    ("same-name-twice", _duplicate_name, "name", "dense_1"),
    ("dim-ordering-mapping", _first("dim_ordering", {"a": 1}), "dim_ordering",
     "dense_1"),
    ("activation-numpy",
     _first("activation", {"class_name": "__numpy__", "config": {}}),
     "activation", "dense_1"),
    ("activation-bytes",
     _first("activation", {"class_name": "__bytes__", "config": {"value": 1}}),
     "activation", "dense_1"),
    ("dilation-nested", _first("dilation_rate", [[1]]), "dilation_rate", "dense_1"),
    ("backend-number", lambda c: c.__setitem__("backend", 3), "backend", None),
    ("class-name-number", lambda c: c["config"][1].__setitem__("class_name", 5),
     "name", None),
    ("merge-of-models-not-first", _merge_of_models_second, "layers", "merge"),
    ("merge-config-text", _merge_first("concat"), None, None),
    ("merge-first-without-models", _merge_first({"name": "m", "mode": "sum"}),
     "input_shape", "m"),
    ("merge-branch-not-sequential",
     _merge_first({"name": "m", "layers": [{"class_name": "Dense", "config": {}}]}),
     "layers", "m"),
    ("nested-model-two-inputs", _nested_model_with_two_inputs, "config", "model_1"),
    ("nested-model-two-outputs", _nested_model_with_two_outputs, "config", "model_1"),
]  # fmt: skip

FUNCTIONAL = [
    ("dtype-unknown", _inputs("input_dtype", "x"), "input_dtype", "x"),
    ("dtype-list", _inputs("input_dtype", [1]), "input_dtype", "x"),
    ("output-missing", _body("output_layers", [["nope", 0, 0]]), "output_layers", None),
    ("no-layers", _body("layers", []), "layers", None),
    ("output-int", _body("output_layers", [5]), "output_layers", None),
    ("inputs-int", _body("input_layers", 5), "input_layers", None),
    ("inbound-int", _inbound, "inbound_nodes", "a"),
    ("inbound-second-node", _inbound_item(1, 1), "inbound_nodes", "a"),
    ("inbound-second-tensor", _inbound_item(2, 1), "inbound_nodes", "a"),
    ("merge-mode-list",
     lambda c: [layer["config"].__setitem__("mode", ["x"])
                for layer in c["config"]["layers"] if layer["class_name"] == "Merge"],
     "mode", "cat"),
    ("inbound-unknown-layer", _inbound_item(0, "ghost"), "inbound_nodes", None),
    ("cycle", _inbound_of(1, [[["out", 0, 0]]]), "inbound_nodes", None),
    # A layer that takes nothing: refused by name while the file is read.
    ("inbound-none", _inbound_of(1, []), "inbound_nodes", "a"),
    ("inbound-null", _inbound_of(1, None), "inbound_nodes", "a"),
]  # fmt: skip


GRAPH_CASES = [
    ("input-without-name", lambda c: c["input_config"][0].pop("name"),
     "input_config", None),
    ("input-shape-int", lambda c: c["input_config"][0].__setitem__("input_shape", 5),
     "input_shape", "x"),
    ("node-int", lambda c: c["node_config"].__setitem__(0, 3), "node_config", None),
    ("inputs-float", lambda c: c["node_config"][0].__setitem__("inputs", 2.5),
     "inputs", "a"),
    ("model-name", lambda c: c.__setitem__("name", "Tree"), "name", None),
    ("node-without-input", lambda c: c["node_config"][0].__setitem__("input", None),
     "input", "a"),
    ("without-nodes", lambda c: c.pop("nodes"), "node_config", None),
    ("node-without-layer", lambda c: c["nodes"].pop("a_bn"), "nodes", "a_bn"),
]  # fmt: skip

KERAS0_SEQUENTIAL = [
    ("layer-not-a-dict", lambda c: c["layers"].__setitem__(1, 7), None, None),
    ("layer-without-class", lambda c: c["layers"][1].pop("name"), None, None),
]  # fmt: skip

CASES = (
    [pytest.param(DENSE, "dense", e, f, layer, id=f"sequential-{i}")
     for i, e, f, layer in SEQUENTIAL]
    + [pytest.param(DENSE, "functional", e, f, layer, id=f"functional-{i}")
       for i, e, f, layer in FUNCTIONAL]
    + [pytest.param(GRAPH, "graph", e, f, layer, id=f"graph-{i}")
       for i, e, f, layer in GRAPH_CASES]
    + [pytest.param(GRAPH, "dense", e, f, layer, id=f"keras0-sequential-{i}")
       for i, e, f, layer in KERAS0_SEQUENTIAL]
)  # fmt: skip


@pytest.mark.parametrize("directory, model, edit, field, layer", CASES)
def test_a_hostile_field_is_refused_by_name(
    tmp_path, directory, model, edit, field, layer
):
    path = _edited(tmp_path, directory / f"{model}.json", edit)
    options = {"backend": "theano"} if directory == GRAPH else {}
    with pytest.raises(legacy.LegacyFileError) as caught:
        _load(path, weights=directory / f"{model}.weights.h5", **options)
    error = caught.value
    assert type(error) is legacy.LegacyFileError
    assert error.path == str(path)
    assert error.field == field and error.layer == layer, str(error)
    assert len(str(error)) < 1000


@pytest.mark.parametrize("units", [10**8, 10**9])
def test_sizes_are_checked_before_anything_is_allocated(tmp_path, units):
    """A Dense of 10**9 units would allocate gigabytes for its kernel: its
    size is compared with what the weights file holds before building."""
    path = _edited(tmp_path, DENSE / "dense.json", _first("output_dim", units))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(legacy.LegacyFileError, match="justify") as caught:
        _load(path, weights=DENSE / "dense.weights.h5")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024
    assert (caught.value.layer, caught.value.field) == ("dense_1", "units")


def _laughs(levels):
    """dense.yaml with a "billion laughs" of ``levels`` levels (9**levels
    expanded) as an argument's value; skips without PyYAML, which YAML
    architectures need (the yaml extra)."""
    pytest.importorskip("yaml")
    laughs = ["laughs_0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        laughs.append(
            f"laughs_{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]"
        )
    text = (DENSE / "dense.yaml").read_text()
    extra = f"extra: *l{levels - 1}\n    epsilon:"
    return "\n".join(laughs) + "\n" + text.replace("epsilon:", extra, 1)


def test_aliases_of_aliases_are_refused_quickly(tmp_path):
    """A 1.8 KB YAML "billion laughs" (9**9 expanded) as an argument's
    value: refused by the loader, in well under a second."""
    text = _laughs(9)
    path = tmp_path / "laughs.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(
        legacy.LegacyFileError, match="aliases expand to more than"
    ) as caught:
        _load(path, weights=DENSE / "dense.weights.h5")
    assert time.perf_counter() - started < 5
    assert len(str(caught.value)) < 500


def test_aliases_beyond_the_documents_size_are_refused(tmp_path):
    """Fewer than a million nodes, but far more than the document's size
    justifies (8 a character): 9**5 expanded from a 3 KB file is refused."""
    text = _laughs(5)
    assert 9**5 > 8 * len(text) and 9**5 < 10**6
    path = tmp_path / "laughs.yaml"
    path.write_text(text)
    with pytest.raises(legacy.LegacyFileError, match="aliases expand to more than"):
        _load(path, weights=DENSE / "dense.weights.h5")


@pytest.mark.parametrize("times", [2, 300])
def test_repeated_layer_names_are_refused_before_reading(tmp_path, times):
    source = REAL / "keras-2.2.4-tensorflow" / "dense.weights.h5"
    path = tmp_path / "repeated.h5"
    shutil.copy(source, path)
    with h5py.File(path, "r+") as file:
        names = list(file.attrs["layer_names"])
        file.attrs["layer_names"] = np.array(names[:1] * times + names[1:])
    with pytest.raises(legacy.LegacyFileError, match="more than once") as caught:
        legacy.read_weights(path)
    assert caught.value.field == "layer_names"


def _decoy_config(config, epsilon=0.9):
    layers = config["config"]["layers"] if isinstance(config["config"], dict) else (
        config["config"]
    )  # fmt: skip
    (bn,) = [layer for layer in layers if layer["class_name"] == "BatchNormalization"][
        :1
    ]
    decoy = {"class_name": "BatchNormalization",
             "config": {"name": bn["config"]["name"], "epsilon": epsilon}}  # fmt: skip
    return {"decoy": decoy, **config}


def test_a_decoy_config_changes_nothing(tmp_path):
    """A key before the model's own config holding another config of its
    BatchNormalization: the weights are converted with the config the model
    was built from, by load_model and by load_weights."""
    source = REAL / "keras-2.2.4-tensorflow"
    arrays = np.load(source / "dense.npz")
    path = tmp_path / "decoy.h5"
    shutil.copy(source / "dense.model.h5", path)
    with h5py.File(path, "r+") as file:
        text = file.attrs["model_config"]
        config = json.loads(text.decode() if isinstance(text, bytes) else text)
        file.attrs["model_config"] = json.dumps(_decoy_config(config))
    model = _load(path)
    got = model.predict(arrays["x"], verbose=0)
    np.testing.assert_allclose(
        got, arrays["y"], rtol=1e-4, atol=1e-4 * np.abs(arrays["y"]).max()
    )
    twin = _load(source / "dense.model.h5")
    twin.set_weights([np.zeros_like(w) for w in twin.get_weights()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy.load_weights(twin, path)
    np.testing.assert_allclose(
        twin.predict(arrays["x"], verbose=0), got, rtol=1e-6, atol=1e-6
    )


def _chain(count):
    config = json.loads((DENSE / "dense.json").read_text())
    settings = {"name": "", "activation": "linear", "trainable": True}
    identity = {"class_name": "Activation", "config": settings}
    extra = []
    for index in range(count):
        layer = copy.deepcopy(identity)
        layer["config"]["name"] = f"identity_{index}"
        extra.append(layer)
    config["config"][2:2] = extra
    return config


def test_a_chain_past_the_deepest_is_refused_at_once(tmp_path):
    from keras_bn.legacy.architecture import DEEPEST_CHAIN

    path = tmp_path / "deep.json"
    path.write_text(json.dumps(_chain(DEEPEST_CHAIN + 1)))
    started = time.perf_counter()
    with pytest.raises(legacy.LegacyFileError, match="chain") as caught:
        _load(path, weights=DENSE / "dense.weights.h5")
    assert caught.value.field == "layers"
    assert time.perf_counter() - started < 5


@pytest.mark.slow
def test_the_deepest_chain_is_rebuilt(tmp_path):
    """A chain of identities as deep as is rebuilt (docs/legacy_models.md):
    built, and predicting what the undamaged model does."""
    from keras_bn.legacy.architecture import DEEPEST_CHAIN

    path = tmp_path / "deep.json"
    path.write_text(json.dumps(_chain(DEEPEST_CHAIN - 10)))
    model = _load(path, weights=DENSE / "dense.weights.h5")
    arrays = np.load(DENSE / "dense.npz")
    got = model.predict(arrays["x"], verbose=0)
    np.testing.assert_allclose(
        got, arrays["y"], rtol=1e-4, atol=1e-4 * np.abs(arrays["y"]).max()
    )


def test_several_problems_still_name_the_first(tmp_path):
    def edit(config):
        config["config"][0]["class_name"] = "Highway"
        config["config"][1]["class_name"] = "MaxoutDense"

    path = _edited(tmp_path, DENSE / "dense.json", edit)
    with pytest.raises(legacy.LegacyFileError, match="MaxoutDense") as caught:
        _load(path, weights=DENSE / "dense.weights.h5")
    assert (caught.value.layer, caught.value.field) == ("dense_1", "class_name")


def test_a_huge_epsilon_in_a_whole_model_file(tmp_path):
    """1 followed by 400 zeros, where load_weights reads it from the file's
    model_config: refused by name, the model unchanged."""
    source = REAL / "keras-2.2.4-tensorflow" / "dense.model.h5"
    path = tmp_path / "eps.h5"
    shutil.copy(source, path)
    with h5py.File(path, "r+") as file:
        text = file.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else text
        file.attrs["model_config"] = text.replace(
            '"epsilon": 0.001', '"epsilon": 1' + "0" * 400, 1
        )
    model = _load(source)
    before = [w.copy() for w in model.get_weights()]
    for load in (lambda: _load(path), lambda: legacy.load_weights(model, path)):
        with pytest.raises(legacy.LegacyFileError) as caught:
            load()
        assert caught.value.field == "epsilon"
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.slow  # two minutes: every crafted case above has a fast test of its own
@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the parser is the same on every backend"
)
def test_architecture_fuzz():
    """Hundreds of damaged and hostile variants of every real fixture's
    architecture, under a memory limit: refused, or loaded as the file says;
    never another exception, a silent change, a slow case or one over the
    limit (scripts/fuzz_architectures.py)."""
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "fuzz_architectures.py"), "--variants", "250",
         "--memory-gb", "2", "--json"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode in (0, 1) and result.stdout.strip(), result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["defects"] == [], summary
    outcomes = summary["outcomes"]
    assert outcomes.get("refused", 0) >= 60 and outcomes.get("same", 0) >= 60, outcomes


def test_keras_3_and_later_read_as_keras_2():
    from keras_bn.legacy.architecture import parse

    config = json.loads((REAL / "tf-keras-2.21-tensorflow" / "dense.json").read_text())
    config["keras_version"] = "3.4.1"
    assert parse(config, "m.json").generation == 2


def test_a_keras0_graph_merges_by_concatenation_by_default(tmp_path):
    """A Keras 0.x Graph node with several inputs and no merge_mode
    concatenates them (Keras 0.x's default)."""
    from keras_bn.legacy.architecture import parse

    config = json.loads((GRAPH / "graph.json").read_text())
    merging = [e for e in config["node_config"] if e.get("inputs")]
    assert merging
    for entry in merging:
        entry.pop("merge_mode", None)
    arch = parse(config, "graph.json")
    merges = [node for node in arch.nodes if node.class_name == "Merge"]
    assert merges and all(node.config["mode"] == "concat" for node in merges)


def test_the_deepest_chain_is_the_limit_itself(tmp_path, monkeypatch):
    """A chain exactly DEEPEST_CHAIN deep is rebuilt, one layer more is
    refused (the limit lowered, so that the boundary runs in the fast
    suite)."""
    from keras_bn.legacy import architecture

    config = _chain(3)
    depth = len(config["config"])  # a Sequential model: one layer after another
    monkeypatch.setattr(architecture, "DEEPEST_CHAIN", depth)
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(config))
    model = _load(path, weights=DENSE / "dense.weights.h5")
    arrays = np.load(DENSE / "dense.npz")
    np.testing.assert_allclose(
        model.predict(arrays["x"], verbose=0), arrays["y"], rtol=1e-4, atol=1e-5
    )
    path.write_text(json.dumps(_chain(4)))
    with pytest.raises(legacy.LegacyFileError, match=f"chain of {depth + 1} layers"):
        _load(path, weights=DENSE / "dense.weights.h5")


@pytest.mark.parametrize("release", ["keras-2.2.4-tensorflow", "keras-2.0.8-theano"])
def test_a_keras2_json_without_its_version_is_read_as_keras2(tmp_path, release):
    """A Keras 2 to_json() of Dense layers whose keras_version was stripped:
    its config's names (``units``) tell Keras 2, and it predicts what the
    release did."""
    source = REAL / release / "dense.json"

    def strip(config):
        config.pop("keras_version", None)
        config.pop("backend", None)

    path = _edited(tmp_path, source, strip)
    assert "keras_version" not in path.read_text()
    model = _load(path, weights=REAL / release / "dense.weights.h5")
    arrays = np.load(REAL / release / "dense.npz")
    np.testing.assert_allclose(
        model.predict(arrays["x"], verbose=0), arrays["y"], rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("key", ["output_dim", "input_dim"])
def test_an_embeddings_sizes_are_checked_before_anything_is_allocated(tmp_path, key):
    """An Embedding of 10**7 rows or columns would allocate 440 MB: both
    sizes are compared with what the weights file holds before building
    (10**7 is below the bound of other whole numbers, 2**24)."""
    zoo = Path(__file__).resolve().parent / "fixtures" / "real_zoo"
    directory = zoo / "keras-2.2.4-tensorflow"

    def edit(config):
        config["config"]["layers"][0]["config"][key] = 10**7

    path = _edited(tmp_path, directory / "embedding.json", edit)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(legacy.LegacyFileError, match="justify") as caught:
        _load(path, weights=directory / "embedding.weights.h5")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024
    assert caught.value.layer == "embedding_1"


def test_a_keras2_json_without_version_or_epsilon_takes_keras2s_default(tmp_path):
    """No keras_version and a BatchNormalization that records no epsilon: the
    Dense layers' ``units`` tell Keras 2, whose default epsilon is 1e-3."""
    release = "keras-2.2.4-tensorflow"

    def strip(config):
        config.pop("keras_version", None)
        config.pop("backend", None)
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "BatchNormalization":
                layer["config"].pop("epsilon")

    path = _edited(tmp_path, REAL / release / "dense.json", strip)
    model = _load(path, weights=REAL / release / "dense.weights.h5")
    epsilons = [
        layer.epsilon for layer in model.layers if "batch_normalization" in layer.name
    ]
    assert epsilons and all(epsilon == 1e-3 for epsilon in epsilons)


def _not_utf8(path):
    path.write_bytes(b'{"class_name": "Sequential", "config": "\xff\xfe"}')
    return path


@pytest.mark.parametrize(
    "make, kind, message",
    [
        (lambda directory: directory / "absent.json", FileNotFoundError,
         "no such file."),
        (lambda directory: directory, legacy.LegacyFileError,
         "cannot read the architecture: "),
        (lambda directory: _not_utf8(directory / "latin.json"),
         legacy.LegacyFileError, "cannot read the architecture: 'utf-8' codec"),
    ],
    ids=["missing", "a-folder", "not-utf-8"],
)  # fmt: skip
def test_an_architecture_file_it_cannot_read(tmp_path, make, kind, message):
    """No file, a folder, bytes that are not UTF-8: one LegacyFileError
    naming the path (a missing file's also a FileNotFoundError)."""
    path = make(tmp_path)
    with pytest.raises(legacy.LegacyFileError) as caught:
        _load(path, weights=DENSE / "dense.weights.h5")
    assert isinstance(caught.value, kind)
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_the_most_layers_is_the_limit_itself(tmp_path, monkeypatch):
    """As many layers as MOST_LAYERS are read, one more is refused before
    anything is built (the limit lowered to dense.json's five layers)."""
    from keras_bn.legacy import architecture

    config = json.loads((DENSE / "dense.json").read_text())
    monkeypatch.setattr(architecture, "MOST_LAYERS", 5)
    assert len(architecture.parse(config, "dense.json").nodes) == 5
    monkeypatch.setattr(architecture, "MOST_LAYERS", 4)
    with pytest.raises(legacy.LegacyFileError) as caught:
        _load(DENSE / "dense.json", weights=DENSE / "dense.weights.h5")
    assert caught.value.field == "layers"
    assert "5 layers: at most 4 are rebuilt" in str(caught.value)


def _predicts_the_release(model, directory, name, factor=1.0):
    arrays = np.load(directory / f"{name}.npz")
    expected = factor * arrays["y"]
    np.testing.assert_allclose(
        model.predict(arrays["x"], verbose=0),
        expected,
        rtol=1e-4,
        atol=1e-4 * np.abs(expected).max(),
    )


def test_one_endpoint_written_as_a_single_triple(tmp_path):
    """tf.keras wrote a lone input or output as ``[name, 0, 0]`` rather than
    ``[[name, 0, 0]]``: read as that one layer."""

    def edit(config):
        config["config"]["input_layers"] = ["x", 0, 0]
        config["config"]["output_layers"] = ["out", 0, 0]

    path = _edited(tmp_path, DENSE / "functional.json", edit)
    model = _load(path, weights=DENSE / "functional.weights.h5")
    _predicts_the_release(model, DENSE, "functional")


def test_a_layer_that_takes_one_tensor_twice(tmp_path):
    """A merge of a tensor with itself has two inbound edges from one layer:
    it is ready once that layer is (not a cycle), and the model's output
    summed with itself is twice the release's."""

    def edit(config):
        body = config["config"]
        body["layers"].append({
            "name": "twice", "class_name": "Merge",
            "config": {"name": "twice", "mode": "sum"},
            "inbound_nodes": [[["out", 0, 0], ["out", 0, 0]]],
        })  # fmt: skip
        body["output_layers"] = [["twice", 0, 0]]

    path = _edited(tmp_path, DENSE / "functional.json", edit)
    model = _load(path, weights=DENSE / "functional.weights.h5")
    _predicts_the_release(model, DENSE, "functional", factor=2.0)


def test_keras0_layers_take_the_names_keras_0_3_gave_them():
    """Keras 0.2 recorded no layer names; Keras 0.3 named each layer after
    its class in lower case (``custom_name``), numbered by position. A
    Keras 0.2 file's layers are named as Keras 0.3.3 named the same
    models'."""
    for model in ("dense", "conv1d", "conv2d_cf", "dense_mode1"):
        names = {}
        for release in ("keras-0.2.0-theano", "keras-0.3.3-theano"):
            directory = REAL / release
            rebuilt = _load(
                directory / f"{model}.json",
                weights=directory / f"{model}.weights.h5",
                backend="theano",
            )
            names[release] = [layer.name for layer in rebuilt.layers]
        assert names["keras-0.2.0-theano"] == names["keras-0.3.3-theano"], model


def test_integer_inputs_where_the_old_model_took_them(tmp_path):
    """A Sequential whose first layer is an Embedding took integer indices
    (Keras 2's Embedding built its input as int32), and a Keras 0.x Graph
    input declared with dtype 'int' did too; other models take float32."""
    zoo = REAL.parent / "real_zoo" / "keras-2.2.4-tensorflow"
    embedding = _load(zoo / "embedding.json", weights=zoo / "embedding.weights.h5")
    assert [t.dtype for t in embedding.inputs] == ["int32"]
    dense = _load(DENSE / "dense.json", weights=DENSE / "dense.weights.h5")
    assert [t.dtype for t in dense.inputs] == ["float32"]

    def integer_input(config):
        config["input_config"][0]["dtype"] = "int"

    weights = GRAPH / "graph.weights.h5"
    graph = _edited(tmp_path, GRAPH / "graph.json", integer_input)
    integers = _load(graph, weights=weights, backend="theano")
    assert [t.dtype for t in integers.inputs] == ["int32"]
    floats = _load(GRAPH / "graph.json", weights=weights, backend="theano")
    assert [t.dtype for t in floats.inputs] == ["float32"]


def test_a_class_name_config_json_without_its_version_is_keras1(tmp_path):
    """A class_name/config architecture is Keras 1 or later (Keras 0.x wrote
    flat layer dicts): without keras_version and without Keras 2's argument
    names it is read as Keras 1, whose defaults then apply (a
    BatchNormalization's momentum 0.99, where Keras 0.x's was 0.9)."""
    from keras_bn.legacy.architecture import read_architecture
    from keras_bn.legacy.layers_map import translate

    def unversioned(config):
        config.pop("keras_version")
        for layer in config["config"]:
            layer["config"].pop("momentum", None)

    path = _edited(tmp_path, REAL / "keras-1.0.5-theano" / "dense.json", unversioned)
    architecture = read_architecture(path)
    assert architecture.generation == 1
    (batch_norm, *_) = [
        node for node in architecture.nodes if node.class_name == "BatchNormalization"
    ]
    plan = translate(batch_norm, architecture.generation, "keras_bn")
    assert plan.kwargs["momentum"] == 0.99


def test_a_keras0_graph_output_of_several_inputs_merges_them(tmp_path):
    """A Keras 0.x Graph output with several ``inputs`` merges them with its
    merge_mode: the output ``out`` summed with itself is twice the
    release's."""

    def edit(config):
        (output,) = config["output_config"]
        output.update(input=None, inputs=["out", "out"], merge_mode="sum")

    path = _edited(tmp_path, GRAPH / "graph.json", edit)
    model = _load(path, weights=GRAPH / "graph.weights.h5", backend="theano")
    assert model.layers[-1].name == "out_output_merge"
    _predicts_the_release(model, GRAPH, "graph", factor=2.0)


def test_a_first_dense_declared_by_input_dim_alone(tmp_path):
    """Keras 0.x/1.x let a first Dense declare its input with input_dim
    alone: the sample shape is (input_dim,)."""
    path = _edited(
        tmp_path,
        DENSE / "dense.json",
        lambda config: config["config"][0]["config"].pop("batch_input_shape"),
    )
    model = _load(path, weights=DENSE / "dense.weights.h5")
    assert tuple(model.inputs[0].shape) == (None, 6)
    _predicts_the_release(model, DENSE, "dense")


def test_wrappers_nested_hundreds_deep_are_a_legacy_file_error(tmp_path):
    """A Dense inside 330 TimeDistributed wrappers: the JSON reads, but
    translating it nests deeper than Python's recursion allows; the
    RecursionError becomes a LegacyFileError, nothing is built."""
    layer = {"class_name": "Dense", "config": {"name": "d", "output_dim": 2}}
    for index in range(330):
        layer = {"class_name": "TimeDistributed",
                 "config": {"name": f"wrapper_{index}", "layer": layer}}  # fmt: skip
    layer["config"]["batch_input_shape"] = [None, 3, 2]
    path = tmp_path / "deep.json"
    path.write_text(json.dumps({"class_name": "Sequential", "keras_version": "1.2.2",
                                "config": [layer]}))  # fmt: skip
    with pytest.raises(legacy.LegacyFileError) as caught:
        _load(path, weights=DENSE / "dense.weights.h5")
    assert str(caught.value).startswith(
        f"{path}: cannot read the architecture: RecursionError: "
    )


@pytest.mark.parametrize("name", ["model.json", "MODEL.JSON", "model.Json"])
def test_a_json_file_that_does_not_parse_is_refused_as_json(tmp_path, name):
    """A file named .json (in any case) that is not valid JSON is refused as
    such, not read again as YAML."""
    path = tmp_path / name
    path.write_text('{"class_name": "Sequential", "config": [')
    with pytest.raises(legacy.LegacyFileError, match="not valid JSON"):
        _load(path, weights=DENSE / "dense.weights.h5")


def _parsed(config):
    from keras_bn.legacy.architecture import parse

    return parse(config, "model.json")


def _refusal(config):
    with pytest.raises(legacy.LegacyFileError) as caught:
        _parsed(config)
    return caught.value


def test_tf_keras_functional_class_is_a_functional_model():
    """tf.keras 2.4 and later name a functional model's class "Functional"."""
    config = json.loads(
        (REAL / "tf-keras-2.21-tensorflow" / "functional.json").read_text()
    )
    assert config["class_name"] == "Functional"
    arch = _parsed(config)
    assert arch.kind == "functional" and arch.generation == 2
    names = [layer["config"]["name"] for layer in config["config"]["layers"]]
    inputs = [name for name, _, _ in arch.inputs]
    assert inputs + [node.name for node in arch.nodes] == names


def test_unnamed_layers_are_named_by_their_position():
    """A layer config without a name (hand-written JSON) is named
    ``layer_<position in the list, from 0>``."""
    config = {
        "class_name": "Sequential",
        "config": [
            {"class_name": "Dense", "config": {"output_dim": 2, "input_dim": 3}},
            {"class_name": "Activation", "config": {"activation": "relu"}},
        ],
    }
    arch = _parsed(config)
    assert [node.name for node in arch.nodes] == ["layer_0", "layer_1"]
    assert arch.outputs == ["layer_1"]


def _functional_config(inbound="x", dtype=None):
    input_config = {"name": "x", "batch_input_shape": [None, 3]}
    if dtype is not None:
        input_config["input_dtype"] = dtype
    return {
        "class_name": "Model",
        "keras_version": "1.2.2",
        "config": {
            "layers": [
                {"name": "x", "class_name": "InputLayer", "config": input_config,
                 "inbound_nodes": []},
                {"name": "d", "class_name": "Dense",
                 "config": {"name": "d", "output_dim": 2},
                 "inbound_nodes": [[[inbound, 0, 0]]]},
            ],
            "input_layers": [["x", 0, 0]],
            "output_layers": [["d", 0, 0]],
        },
    }  # fmt: skip


def test_one_input_that_no_layer_produces_is_named():
    error = _refusal(_functional_config(inbound="ghost"))
    assert error.field == "inbound_nodes"
    assert "take inputs that no layer produces: ['ghost']" in str(error)


@pytest.mark.parametrize(
    "dtype, expected",
    [("int", "int32"), ("float", "float32"), ("int64", "int64"), (None, "float32")],
)
def test_an_input_layer_s_dtype(dtype, expected):
    """Keras 0.x and 1.x wrote ``input_dtype`` "int" and "float" (Theano's
    floatX-like names): int32 and float32, as the old Input built them."""
    ((_, shape, got),) = _parsed(_functional_config(dtype=dtype)).inputs
    assert (shape, got) == ((3,), expected)


def test_a_keras0_graph_with_two_layers_of_one_name_is_refused():
    config = json.loads((GRAPH / "graph.json").read_text())
    config["input_config"][0]["name"] = "a"  # also a node's name
    for node in config["node_config"]:
        if node["input"] == "x":
            node["input"] = "a"
    error = _refusal(config)
    assert error.field == "name" and error.layer == "a"
    assert "two layers are named 'a'" in str(error)


def test_a_tf_keras_sequential_lists_its_input_layer():
    """tf.keras 2.x Sequential configs list an InputLayer first: it is the
    model's input, not a layer to rebuild."""
    path = REAL / "tf-keras-2.21-tensorflow" / "dense.json"
    config = json.loads(path.read_text())
    layers = config["config"]["layers"]
    assert layers[0]["class_name"] == "InputLayer"
    arch = _parsed(config)
    assert [node.class_name for node in arch.nodes] == [
        layer["class_name"] for layer in layers[1:]
    ]
    assert arch.nodes[0].inbound == ["input"]
    ((_, shape, dtype),) = arch.inputs
    assert shape == tuple(layers[0]["config"]["batch_input_shape"][1:])


def test_a_nested_model_that_returns_its_input():
    """A nested functional model whose output is its own input adds no
    layer: what follows takes what came before it."""
    identity = {
        "class_name": "Model",
        "config": {
            "name": "identity",
            "layers": [{"name": "inner_x", "class_name": "InputLayer",
                        "config": {"batch_input_shape": [None, 2]},
                        "inbound_nodes": []}],
            "input_layers": [["inner_x", 0, 0]],
            "output_layers": [["inner_x", 0, 0]],
        },
    }  # fmt: skip
    config = {
        "class_name": "Sequential",
        "keras_version": "2.2.4",
        "config": {
            "layers": [
                {"class_name": "Dense",
                 "config": {"name": "first", "units": 2,
                            "batch_input_shape": [None, 3]}},
                identity,
                {"class_name": "Dense", "config": {"name": "last", "units": 1}},
            ]
        },
    }  # fmt: skip
    arch = _parsed(config)
    assert [(node.name, node.inbound) for node in arch.nodes] == [
        ("first", ["input"]),
        ("last", ["first"]),
    ]


def test_a_layer_with_two_oversized_arguments_is_one_thing(tmp_path):
    def edit(config):
        settings = config["config"][0]["config"]
        settings["nb_filter"] = 10**9
        settings["nb_row"] = 10**9

    path = _edited(tmp_path, DENSE / "conv2d_cl.json", edit)
    with pytest.raises(legacy.LegacyFileError, match="justify") as caught:
        _load(path, weights=DENSE / "conv2d_cl.weights.h5")
    assert "cannot rebuild 1 thing(s)" in str(caught.value)
    assert caught.value.field == "kernel_size"


def test_several_problems_name_the_first_s_field(tmp_path):
    def edit(config):
        config["config"][0]["config"]["activation"] = "nonesuch"
        config["config"][1]["class_name"] = "MaxoutDense"

    path = _edited(tmp_path, DENSE / "dense.json", edit)
    with pytest.raises(legacy.LegacyFileError, match="MaxoutDense") as caught:
        _load(path, weights=DENSE / "dense.weights.h5")
    assert (caught.value.layer, caught.value.field) == ("dense_1", "activation")
    assert "cannot rebuild 2 thing(s)" in str(caught.value)


@pytest.mark.parametrize(
    "directory, passed",
    [(REAL / "keras-1.2.2-tensorflow", True), (REAL / "keras-2.2.4-tensorflow", False)],
)
def test_dim_ordering_reaches_load_weights_for_keras_0_and_1_only(directory, passed):
    """Keras 2 files record their kernels in Keras 3's layout: the caller's
    dim_ordering is not theirs to use."""
    from keras_bn.legacy.models import rebuild

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = rebuild(
            directory / "dense.json",
            weights=directory / "dense.weights.h5",
            dim_ordering="tf",
        )
    (options,) = [line for line in rebuilt.assumptions if "load_weights" in line]
    assert ("'dim_ordering': 'tf'" in options) is passed


def _dense(name, **config):
    return {"class_name": "Dense", "config": {"name": name, "output_dim": 2, **config}}


def _layer(name, class_name, inbound, **config):
    return {
        "name": name,
        "class_name": class_name,
        "config": {"name": name, **config},
        "inbound_nodes": [[[i, 0, 0] for i in inbound]] if inbound else [],
    }


def _model(layers, inputs, outputs, **body):
    return {
        "class_name": "Model",
        "config": {
            "layers": layers,
            "input_layers": [[i, 0, 0] for i in inputs],
            "output_layers": [[o, 0, 0] for o in outputs],
            **body,
        },
    }


# (config, (kind, generation), inputs, nodes as (name, class, inbound), outputs)
ACCEPTED = {
    "keras1-sequential-list": (
        {"class_name": "Sequential",
         "config": [_dense("a", input_dim=3), _dense("b")]},
        ("sequential", 1), [("input", (3,), "float32")],
        [("a", "Dense", ["input"]), ("b", "Dense", ["a"])], ["b"]),
    "keras2-sequential-dict": (
        {"class_name": "Sequential", "keras_version": "2.1.6",
         "config": {"name": "s", "layers": [
             _dense("a", batch_input_shape=[None, 4, 5]), _dense("b")]}},
        ("sequential", 2), [("input", (4, 5), "float32")],
        [("a", "Dense", ["input"]), ("b", "Dense", ["a"])], ["b"]),
    "keras3-batch-shape": (
        {"class_name": "Sequential", "keras_version": "3.3.3",
         "config": {"layers": [_dense("a", batch_shape=[None, 7])]}},
        ("sequential", 2), [("input", (7,), "float32")],
        [("a", "Dense", ["input"])], ["a"]),
    "input-shape": (
        {"class_name": "Sequential",
         "config": [_dense("a", input_shape=[2, None])]},
        ("sequential", 1), [("input", (2, None), "float32")],
        [("a", "Dense", ["input"])], ["a"]),
    "conv1d-input-dim-and-length": (
        {"class_name": "Sequential", "config": [
            {"class_name": "Convolution1D",
             "config": {"name": "c", "nb_filter": 2, "filter_length": 3,
                        "input_dim": 4, "input_length": 9}}]},
        ("sequential", 1), [("input", (9, 4), "float32")],
        [("c", "Convolution1D", ["input"])], ["c"]),
    "embedding-input-length": (
        {"class_name": "Sequential", "config": [
            {"class_name": "Embedding",
             "config": {"name": "e", "input_dim": 50, "output_dim": 4,
                        "input_length": 6}}, _dense("d")]},
        ("sequential", 1), [("input", (6,), "int32")],
        [("e", "Embedding", ["input"]), ("d", "Dense", ["e"])], ["d"]),
    "keras2-names-without-version": (
        {"class_name": "Sequential", "config": [
            {"class_name": "Dense", "config": {"name": "a", "units": 2,
                                                "input_shape": [3]}}]},
        ("sequential", 2), [("input", (3,), "float32")],
        [("a", "Dense", ["input"])], ["a"]),
    "nested-sequentials": (
        {"class_name": "Sequential", "keras_version": "1.2.2", "config": [
            {"class_name": "Sequential", "config": [_dense("a", input_dim=3)]},
            {"class_name": "Sequential", "config": {"layers": [_dense("b")]}},
            _dense("c")]},
        ("sequential", 1), [("input", (3,), "float32")],
        [("a", "Dense", ["input"]), ("b", "Dense", ["a"]), ("c", "Dense", ["b"])],
        ["c"]),
    "nested-functional-first": (
        {"class_name": "Sequential", "keras_version": "2.2.4", "config": {
            "layers": [
                {"class_name": "Model", "config": {
                    "name": "inner",
                    "layers": [
                        _layer("inner_x", "InputLayer", [],
                               batch_input_shape=[None, 3]),
                        _layer("d", "Dense", ["inner_x"], units=2)],
                    "input_layers": [["inner_x", 0, 0]],
                    "output_layers": [["d", 0, 0]]}},
                {"class_name": "Dense", "config": {"name": "out", "units": 1}}]}},
        ("sequential", 2), [("input", (3,), "float32")],
        [("d", "Dense", ["input"]), ("out", "Dense", ["d"])], ["out"]),
    "merge-of-models": (
        {"class_name": "Sequential", "keras_version": "1.2.2", "config": [
            {"class_name": "Merge", "config": {
                "name": "m", "mode": "concat", "concat_axis": -1, "layers": [
                    {"class_name": "Sequential",
                     "config": [_dense("a", input_dim=3)]},
                    {"class_name": "Sequential",
                     "config": [_dense("b", input_dim=5)]}]}},
            _dense("out")]},
        ("sequential", 1),
        [("m_input_0", (3,), "float32"), ("m_input_1", (5,), "float32")],
        [("a", "Dense", ["m_input_0"]), ("b", "Dense", ["m_input_1"]),
         ("m", "Merge", ["a", "b"]), ("out", "Dense", ["m"])], ["out"]),
    "functional-file-order-and-inputs": (
        _model(
            [_layer("late", "Merge", ["early", "y"], mode="sum"),
             _layer("y", "InputLayer", [], batch_input_shape=[None, 2]),
             _layer("x", "InputLayer", [], batch_input_shape=[None, 2],
                    input_dtype="float"),
             _layer("early", "Dense", ["x"], output_dim=2)],
            inputs=["x", "y"], outputs=["late", "early"]),
        ("functional", 1), [("x", (2,), "float32"), ("y", (2,), "float32")],
        [("early", "Dense", ["x"]), ("late", "Merge", ["early", "y"])],
        ["late", "early"]),
    "keras0-sequential": (
        {"name": "Sequential", "layers": [
            {"name": "Dense", "output_dim": 2, "input_dim": 3},
            {"name": "Activation", "activation": "relu"},
            {"name": "Dense", "output_dim": 1, "custom_name": "last"}]},
        ("sequential", 0), [("input", (3,), "float32")],
        [("dense_0", "Dense", ["input"]), ("activation_1", "Activation", ["dense_0"]),
         ("last_2", "Dense", ["activation_1"])], ["last_2"]),
    "keras0-graph": (
        {"name": "Graph",
         "input_config": [{"name": "x", "input_shape": [3]},
                          {"name": "i", "input_shape": [2], "dtype": "int"}],
         "node_config": [{"name": "a", "input": "x"},
                         {"name": "b", "inputs": ["a", "x"]},
                         {"name": "c", "inputs": ["a", "b"], "merge_mode": "sum"}],
         "output_config": [{"name": "out", "input": "c"}],
         "nodes": {"a": {"name": "Dense", "output_dim": 3},
                   "b": {"name": "Dense", "output_dim": 3},
                   "c": {"name": "Activation", "activation": "linear"}}},
        ("graph", 0), [("x", (3,), "float32"), ("i", (2,), "int32")],
        [("a", "Dense", ["x"]), ("b_merge", "Merge", ["a", "x"]),
         ("b", "Dense", ["b_merge"]), ("c_merge", "Merge", ["a", "b"]),
         ("c", "Activation", ["c_merge"])], ["c"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_what_an_architecture_says(case):
    """Each form the old releases wrote, read into inputs, layers in an order
    where inputs come first, and outputs."""
    config, (kind, generation), inputs, nodes, outputs = ACCEPTED[case]
    arch = _parsed(copy.deepcopy(config))
    assert (arch.kind, arch.generation) == (kind, generation)
    assert arch.inputs == inputs
    assert [(n.name, n.class_name, n.inbound) for n in arch.nodes] == nodes
    assert arch.outputs == outputs


def test_a_keras0_graph_merge_s_defaults_and_settings():
    config, *_ = ACCEPTED["keras0-graph"]
    nodes = {node.name: node for node in _parsed(copy.deepcopy(config)).nodes}
    assert nodes["b_merge"].config == {"mode": "concat", "concat_axis": -1}
    assert nodes["c_merge"].config == {"mode": "sum", "concat_axis": -1}


def test_a_merge_of_models_keeps_its_settings_but_its_models():
    config, *_ = ACCEPTED["merge-of-models"]
    (merge,) = [n for n in _parsed(copy.deepcopy(config)).nodes if n.name == "m"]
    assert merge.config == {"name": "m", "mode": "concat", "concat_axis": -1}


def test_the_depth_is_the_longest_chain():
    config, *_ = ACCEPTED["keras0-graph"]
    # x -> a -> b_merge -> b -> c_merge -> c
    assert _parsed(copy.deepcopy(config)).depth == 5


def test_a_functional_model_without_outputs_is_refused():
    config = _functional_config()
    config["config"]["output_layers"] = []
    error = _refusal(config)
    assert error.field == "output_layers"
    assert "output_layers: [] name no layer of the model" in str(error)


def test_a_wrapped_layer_s_sizes_are_checked_under_its_own_names(tmp_path):
    """A Dense inside a TimeDistributed with 10**6 units: more than the
    weights file's numbers justify, though under the bound of other whole
    numbers; refused under the wrapped layer's own argument."""
    zoo = REAL.parent / "real_zoo" / "keras-2.2.4-tensorflow"

    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "TimeDistributed":
                layer["config"]["layer"]["config"]["units"] = 10**6

    path = _edited(tmp_path, zoo / "time_distributed.json", edit)
    with pytest.raises(legacy.LegacyFileError, match="justify") as caught:
        _load(path, weights=zoo / "time_distributed.weights.h5")
    assert caught.value.field == "units"


def test_a_whole_model_file_without_its_config_is_refused(tmp_path):
    path = tmp_path / "no_config.h5"
    shutil.copy(REAL / "keras-2.2.4-tensorflow" / "dense.model.h5", path)
    with h5py.File(path, "r+") as file:
        del file.attrs["model_config"]
    with pytest.raises(legacy.LegacyFileError, match="holds no architecture") as caught:
        _load(path)
    assert caught.value.field == "model_config"


def test_a_missing_array_is_named_as_the_field(tmp_path):
    path = tmp_path / "missing.h5"
    shutil.copy(REAL / "keras-2.2.4-tensorflow" / "dense.weights.h5", path)
    with h5py.File(path, "r+") as file:
        del file["dense_1"]["dense_1/bias:0"]
    with pytest.raises(legacy.LegacyFileError, match="is missing from") as caught:
        legacy.read_weights(path)
    assert (caught.value.layer, caught.value.field) == ("dense_1", "dense_1/bias:0")


def _k1(*layers, **top):
    return {"class_name": "Sequential", "keras_version": "1.2.2", **top,
            "config": list(layers)}  # fmt: skip


def _with_body(**changes):
    config = _functional_config()
    config["config"].update(changes)
    return config


def _with_inbound(inbound_nodes):
    config = _functional_config()
    config["config"]["layers"][1]["inbound_nodes"] = inbound_nodes
    return config


def _nested(inputs, outputs):
    """A Sequential whose second layer is a functional model named "inner"
    with ``inputs`` inputs and ``outputs`` outputs."""
    layers = [
        _layer(f"i{k}", "InputLayer", [], batch_input_shape=[None, 3])
        for k in range(inputs)
    ]
    layers += [_layer(f"o{k}", "Dense", ["i0"], output_dim=2) for k in range(outputs)]
    inner = _model(
        layers,
        [f"i{k}" for k in range(inputs)],
        [f"o{k}" for k in range(outputs)],
        name="inner",
    )
    return _k1(_dense("a", input_dim=3), inner)  # fmt: skip


def _graph_config(**changes):
    config = copy.deepcopy(ACCEPTED["keras0-graph"][0])
    config.update(changes)
    return config


def _graph_node(index, **entry):
    config = _graph_config()
    config["node_config"][index] = entry
    return config


_MERGE_BRANCH = {"class_name": "Sequential", "config": [_dense("z", input_dim=3)]}
_SORTED_DTYPES = (
    "['bfloat16', 'bool', 'float16', 'float32', 'float64', 'int16', 'int32', "
    "'int64', 'int8', 'uint16', 'uint32', 'uint64', 'uint8']"
)

# (config, the message after "model.json: ", field, layer)
REFUSED = {
    "not-a-mapping": (
        [], "expected a model config (a mapping), got list.", None, None),
    "version-letters": (
        _k1(_dense("a", input_dim=3), keras_version="1x.2"),
        "keras_version: expected a version such as '1.2.2', got '1x.2'.",
        "keras_version", None),
    "version-number": (
        _k1(_dense("a", input_dim=3), keras_version=2),
        "keras_version: expected a version such as '1.2.2', got 2.",
        "keras_version", None),
    "backend-number": (
        _k1(_dense("a", input_dim=3), backend=3),
        "backend: expected text, got 3.", "backend", None),
    "model-class": (
        {"class_name": "Graph", "config": {}},
        "model class 'Graph': expected Sequential, Model or Functional.",
        "class_name", None),
    "same-name": (
        _k1(_dense("a", input_dim=3), _dense("a")),
        "two layers are named 'a': layer names must be unique.", "name", "a"),
    "layer-not-a-pair": (
        _k1(_dense("a", input_dim=3), 7),
        "layer 1: expected {'class_name', 'config'}, got 7.", None, None),
    "layer-config-a-list": (
        _k1(_dense("a", input_dim=3), {"class_name": "Dense", "config": [1]}),
        "layer 1: expected {'class_name', 'config'}, got "
        "{'class_name': 'Dense', 'config': [1]}.", None, None),
    "class-name-number": (
        _k1(_dense("a", input_dim=3), {"class_name": 5, "config": {"name": "b"}}),
        "layer 1: its class_name and name must be text, got 5 and 'b'.",
        "name", None),
    "name-number": (
        _k1(_dense("a", input_dim=3), _dense(7)),
        "layer 1: its class_name and name must be text, got 'Dense' and 7.",
        "name", None),
    "keras0-layer-not-a-dict": (
        {"name": "Sequential",
         "layers": [{"name": "Dense", "output_dim": 2, "input_dim": 3}, 7]},
        "layer 1: expected a Keras 0.x layer dict with its class in 'name', "
        "got 7.", None, None),
    "shape-zero": (
        _k1(_dense("a", batch_input_shape=[None, 0])),
        "batch_input_shape: expected a list of positive integers (or null), "
        "got [None, 0].", "batch_input_shape", "a"),
    "shape-past-the-largest": (
        _k1(_dense("a", batch_input_shape=[None, 2**31])),
        "batch_input_shape: expected a list of positive integers (or null), "
        "got [None, 2147483648].", "batch_input_shape", "a"),
    "shape-bool": (
        _k1(_dense("a", batch_input_shape=[None, True])),
        "batch_input_shape: expected a list of positive integers (or null), "
        "got [None, True].", "batch_input_shape", "a"),
    "shape-a-number": (
        _k1(_dense("a", batch_input_shape=6)),
        "batch_input_shape: expected a list of positive integers (or null), "
        "got 6.", "batch_input_shape", "a"),
    "batch-shape-negative": (
        _k1(_dense("a", batch_shape=[None, -1])),
        "batch_shape: expected a list of positive integers (or null), "
        "got [None, -1].", "batch_shape", "a"),
    "input-shape-float": (
        _k1(_dense("a", input_shape=[2.0])),
        "input_shape: expected a list of positive integers (or null), "
        "got [2.0].", "input_shape", "a"),
    "input-dim-bool": (
        _k1(_dense("a", input_dim=True)),
        "input_dim: expected a list of positive integers (or null), "
        "got True.", "input_dim", "a"),
    "input-dtype": (
        _functional_config(dtype="x"),
        f"input_dtype: expected one of {_SORTED_DTYPES}, got 'x'.",
        "input_dtype", "x"),
    "sequential-empty": (
        _k1(), "a Sequential model without layers.", "layers", None),
    "sequential-layers-missing": (
        {"class_name": "Sequential", "keras_version": "2.2.4",
         "config": {"name": "s"}},
        "a Sequential model without layers.", "layers", None),
    "keras0-sequential-empty": (
        {"name": "Sequential", "layers": []},
        "a Sequential model without layers.", "layers", None),
    "no-input-shape": (
        _k1(_dense("a"), _dense("b")),
        "the first layer declares no input shape (input_shape, "
        "batch_input_shape or input_dim).", "input_shape", "a"),
    "no-input-shape-no-layer": (
        _k1({"class_name": "InputLayer", "config": {"name": "in"}}),
        "the first layer declares no input shape (input_shape, "
        "batch_input_shape or input_dim).", "input_shape", None),
    "merge-of-models-second": (
        _k1(_dense("a", input_dim=3),
            {"class_name": "Merge",
             "config": {"name": "m", "layers": [_MERGE_BRANCH, _MERGE_BRANCH]}}),
        "Layer 'm': a Merge of models is read as the first layer of a "
        "Sequential only.", "layers", "m"),
    "merge-branch-not-sequential": (
        _k1({"class_name": "Merge",
             "config": {"name": "m", "layers": [_MERGE_BRANCH, 7]}}),
        "Layer 'm': branch 1 of a Merge of models is 7 (expected a "
        "Sequential).", "layers", "m"),
    "nested-two-inputs": (
        _nested(2, 1),
        "Layer 'inner': a nested model with 2 inputs and 1 outputs (one of "
        "each is rebuilt).", "config", "inner"),
    "nested-two-outputs": (
        _nested(1, 2),
        "Layer 'inner': a nested model with 1 inputs and 2 outputs (one of "
        "each is rebuilt).", "config", "inner"),
    "inbound-empty": (
        _with_inbound([]),
        "Layer 'd': no inbound node; every layer but an InputLayer takes an "
        "input.", "inbound_nodes", "d"),
    "inbound-number": (
        _with_inbound(7),
        "Layer 'd': inbound_nodes 7 (expected [[[layer, 0, 0], ...]]).",
        "inbound_nodes", "d"),
    "inbound-flat": (
        _with_inbound(["x"]),
        "Layer 'd': inbound_nodes ['x'] (expected [[[layer, 0, 0], ...]]).",
        "inbound_nodes", "d"),
    "inbound-shared": (
        _with_inbound([[["x", 0, 0]], [["x", 0, 0]]]),
        "Layer 'd': called 2 times (a shared layer); only layers called once "
        "are rebuilt.", "inbound_nodes", "d"),
    "inbound-second-node": (
        _with_inbound([[["x", 1, 0]]]),
        "Layer 'd': inbound ['x', 1, 0] (expected [layer, 0, 0]: one node, "
        "one tensor).", "inbound_nodes", "d"),
    "inbound-second-tensor": (
        _with_inbound([[["x", 0, 1]]]),
        "Layer 'd': inbound ['x', 0, 1] (expected [layer, 0, 0]: one node, "
        "one tensor).", "inbound_nodes", "d"),
    "inbound-short": (
        _with_inbound([[["x", 0]]]),
        "Layer 'd': inbound ['x', 0] (expected [layer, 0, 0]: one node, "
        "one tensor).", "inbound_nodes", "d"),
    "inbound-name-number": (
        _with_inbound([[[5, 0, 0]]]),
        "Layer 'd': inbound [5, 0, 0] (expected [layer, 0, 0]: one node, "
        "one tensor).", "inbound_nodes", "d"),
    "functional-without-layers-key": (
        {"class_name": "Model", "config": {"name": "m"}},
        "a functional model config without 'layers'.", "layers", None),
    "functional-empty": (
        _with_body(layers=[]),
        "a functional model without layers.", "layers", None),
    "outputs-a-number": (
        _with_body(output_layers=5),
        "output_layers: expected a list of [layer name, 0, 0], got 5.",
        "output_layers", None),
    "inputs-name-number": (
        _with_body(input_layers=[[5, 0, 0]]),
        "input_layers: expected a list of [layer name, 0, 0], got [[5, 0, 0]].",
        "input_layers", None),
    "outputs-unknown": (
        _with_body(output_layers=[["d", 0, 0], ["nope", 0, 0]]),
        "output_layers: ['nope'] name no layer of the model.",
        "output_layers", None),
    "inputs-unknown": (
        _with_body(input_layers=[["ghost", 0, 0]]),
        "input_layers: ['ghost'] name no layer of the model.",
        "input_layers", None),
    "cycle": (
        _functional_config(inbound="d"),
        "layers ['d'] take their own outputs (a cycle).", "inbound_nodes", None),
    "keras0-model-name": (
        {"name": "Tree"},
        "a Keras 0.x model named 'Tree': expected Sequential or Graph.",
        "name", None),
    "keras0-model-unnamed": (
        {"layers": []},
        "a Keras 0.x model named None: expected Sequential or Graph.",
        "name", None),
    "graph-without-nodes": (
        {"name": "Graph", "node_config": []},
        "a Keras 0.x Graph without 'nodes' and 'node_config'.",
        "node_config", None),
    "graph-without-node-config": (
        {"name": "Graph", "nodes": {}},
        "a Keras 0.x Graph without 'nodes' and 'node_config'.",
        "node_config", None),
    "graph-input-config-number": (
        _graph_config(input_config=5),
        "input_config: expected a list of entries with a text 'name', got 5.",
        "input_config", None),
    "graph-node-config-entry": (
        _graph_config(node_config=[3]),
        "node_config: expected a list of entries with a text 'name', got [3].",
        "node_config", None),
    "graph-output-unnamed": (
        _graph_config(output_config=[{"input": "c"}]),
        "output_config: expected a list of entries with a text 'name', got "
        "[{'input': 'c'}].", "output_config", None),
    "graph-inputs-number": (
        _graph_node(0, name="a", inputs=2.5),
        "Graph node 'a': inputs 2.5 (expected a list of names).", "inputs", "a"),
    "graph-inputs-not-names": (
        _graph_node(0, name="a", inputs=["x", 1]),
        "Graph node 'a': inputs ['x', 1] (expected a list of names).",
        "inputs", "a"),
    "graph-node-without-input": (
        _graph_node(0, name="a"),
        "Graph node 'a' has no input.", "input", "a"),
    "graph-output-without-input": (
        _graph_config(output_config=[{"name": "out", "input": 3}]),
        "Graph output 'out' has no input.", "input", "out"),
    "graph-node-without-layer": (
        _graph_config(nodes={"a": {"name": "Dense", "output_dim": 3}}),
        "Graph node 'b' has no layer in 'nodes'.", "nodes", "b"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_an_architecture_is_refused_for(case):
    """Each refusal names the file, the field and the layer, and says what
    was found against what was expected."""
    config, message, field, layer = REFUSED[case]
    error = _refusal(copy.deepcopy(config))
    assert type(error) is legacy.LegacyFileError
    assert str(error) == f"model.json: {message}"
    assert (error.path, error.field, error.layer) == ("model.json", field, layer)


@pytest.mark.parametrize(
    "shape, expected",
    [([None, 1], (1,)), ([None, 2**31 - 1], (2**31 - 1,)), ([None, None], (None,))],
)
def test_an_input_dimension_up_to_the_largest_is_read(shape, expected):
    """Dimensions from 1 to 2**31 - 1, or null, are read (one more is
    refused: ``shape-past-the-largest``)."""
    arch = _parsed(_k1(_dense("a", batch_input_shape=shape)))
    assert arch.inputs == [("input", expected, "float32")]


def test_an_inbound_item_with_call_arguments_is_read():
    """Keras 2 wrote ``[layer, 0, 0, {kwargs}]``: the fourth item is not a
    second node or tensor."""
    arch = _parsed(_with_inbound([[["x", 0, 0, {}]]]))
    assert [(n.name, n.inbound) for n in arch.nodes] == [("d", ["x"])]


def test_a_functional_model_that_lists_no_inputs_keeps_the_files_order():
    """``input_layers`` may be empty (only ``output_layers`` must name a
    layer): the InputLayers are the inputs, in the file's order."""
    arch = _parsed(_with_body(input_layers=[]))
    assert arch.inputs == [("x", (3,), "float32")] and arch.outputs == ["d"]
