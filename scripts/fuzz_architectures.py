"""Hostile and damaged architectures for `keras_bn.legacy.load_model`.

Variants of the JSON, YAML and whole-model ``model_config`` of every model in
``tests/fixtures/real/`` (files the real Keras releases wrote): a key
deleted, a value of another type, a huge or negative number, a decoy model
config before the real one, a duplicated key, aliases (YAML) and aliases of
aliases, a chain of extra layers (50 identities, or past the deepest that is
rebuilt). Each is loaded with its weights, under a memory limit
(``resource.setrlimit``), and falls in one outcome:

(YAML forms need PyYAML, the ``yaml`` extra; without it they are left out.)

- ``refused``: `LegacyFileError` (with ``.path`` set, a message of bounded
  length);
- ``same``: it loads and predicts what the undamaged model predicts;
- ``changed``: it loads and predicts otherwise, where the edit changed what
  the file says (a deleted key's default, another number);
- ``silent change`` (a defect): it loads and predicts otherwise, where the
  edit did not change what the file says (a decoy, a duplicated key, an
  alias, identity layers);
- ``other exception``, ``unbounded message``, ``slow`` (over 30 s) and
  ``over the memory limit``: defects.

Prints the counts per outcome (and the defects), or with ``--json`` the
counts as JSON; exits 1 on any defect.

    KERAS_BACKEND=jax python scripts/fuzz_architectures.py --variants 300
"""

import argparse
import copy
import json
import random
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np

from keras_bn import legacy

try:  # the yaml extra: without it, the YAML forms are left out
    import yaml
except ImportError:
    yaml = None

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "real"
PRESERVING = ("decoy", "duplicate key", "alias", "identities")
LONGEST_MESSAGE = 4000
SLOW = 30.0

HOSTILE = ["x", 3, -1, 2.5, None, True, [], {}, [1, [2]], {"a": 1},
           float("nan"), float("inf"), 10**400, "²", [None, -6]]  # fmt: skip


def _bases():
    """(name, files, load options, undamaged predictions input)."""
    for directory in sorted(ROOT.iterdir()):
        manifest = json.loads((directory / "manifest.json").read_text())
        release, backend = manifest["release"], manifest["backend"]
        for entry in manifest["models"]:
            files = {k: directory / v for k, v in entry["files"].items()}
            options = {}
            if release.startswith("0."):
                options["backend"] = backend
            if release.startswith("1."):
                options["keras_version"] = release
            yield f"{directory.name}/{entry['name']}", files, options


def _paths(config):
    """Every (container, key) in a config, walked without recursion."""
    out, stack = [], [config]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            out.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return out


def _layers(config):
    body = config.get("config", config)
    layers = body.get("layers") if isinstance(body, dict) else body
    return layers if isinstance(layers, list) else None


def _identity(generation_two, index):
    name = f"fuzz_identity_{index}"
    if generation_two is None:  # Keras 0.x
        return {"name": "Activation", "activation": "linear"}
    config = {"name": name, "activation": "linear", "trainable": True}
    return {"class_name": "Activation", "config": config}


def _mutate(config, kind, rng):
    """The edited config (a copy), or None where the edit does not apply."""
    config = copy.deepcopy(config)
    if kind in ("delete", "swap", "huge", "negative"):
        paths = [(c, k) for c, k in _paths(config)]
        if kind in ("huge", "negative"):
            paths = [
                (c, k)
                for c, k in paths
                if isinstance(c[k], int) and not isinstance(c[k], bool)
            ]
        if kind == "delete":
            paths = [(c, k) for c, k in paths if isinstance(c, dict)]
        if not paths:
            return None
        container, key = rng.choice(paths)
        if kind == "delete":
            del container[key]
        elif kind == "swap":
            container[key] = copy.deepcopy(rng.choice(HOSTILE))
        elif kind == "huge":
            container[key] = rng.choice([10**8, 10**9, 2**63, 10**400])
        else:
            container[key] = -abs(container[key]) - 1
        return config
    if kind == "decoy":
        layers = _layers(config)
        named = [
            layer
            for layer in layers or []
            if isinstance(layer, dict) and "config" in layer
        ]
        if not named or not isinstance(named[0].get("config"), dict):
            return None
        decoy = {"class_name": "BatchNormalization",
                 "config": {"name": named[-1]["config"].get("name"), "epsilon": 0.9,
                            "axis": 7, "dim_ordering": "th"}}  # fmt: skip
        return {"decoy": decoy, **config}
    if kind in ("identities", "deep"):
        layers = _layers(config)
        if layers is None or config.get("class_name", config.get("name")) not in (
            "Sequential",
        ):
            return None
        count = 50 if kind == "identities" else 2100
        keras0 = "class_name" not in config
        extra = [_identity(None if keras0 else True, i) for i in range(count)]
        layers[len(layers) // 2 + 1 : len(layers) // 2 + 1] = extra
        return config
    raise ValueError(kind)


def _duplicate_key_text(text, rng):
    """The JSON with one key written twice, a hostile value first (Python's
    reader keeps the last, as every reader here must)."""
    marks = [i for i in range(len(text)) if text.startswith('"name": ', i)]
    if not marks:
        return None
    at = rng.choice(marks)
    return text[:at] + '"name": "decoy_name", ' + text[at:]


def _alias_yaml(config, laughs):
    """YAML of the config whose repeated values are aliases (laughs: a top
    level key whose aliases of aliases expand nine-fold per level)."""

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return False

    shared = {}

    def share(node):  # equal lists and dicts become one object: aliases
        if isinstance(node, dict):
            return {k: share(v) for k, v in node.items()}
        if isinstance(node, list):
            node = [share(v) for v in node]
            key = json.dumps(node, sort_keys=True)
            return shared.setdefault(key, node)
        return node

    text = yaml.dump(share(config), Dumper=Dumper)
    if laughs:
        lines = ["laughs_0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        for level in range(1, laughs):
            refs = ", ".join([f"*l{level - 1}"] * 9)
            lines.append(f"laughs_{level}: &l{level} [{refs}]")
        text = "\n".join(lines) + "\n" + text
    return text


def _predict(model, x):
    return np.asarray(model.predict(x, batch_size=len(x), verbose=0))


def _load(path, weights, options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return legacy.load_model(path, weights=weights, **options)


def _variants(rng, count):
    """(base, kind, form) triples, every base and kind in turn."""
    bases = list(_bases())
    kinds = ["delete", "swap", "huge", "negative", "decoy", "identities", "deep",
             "duplicate key", "alias", "laughs"]  # fmt: skip
    forms = ["json", "yaml", "model_config"]
    if yaml is None:
        kinds, forms = kinds[:-2], ["json", "model_config"]
    out = []
    while len(out) < count:
        for base in bases:
            kind = kinds[len(out) % len(kinds)]
            form = rng.choice(forms)
            out.append((base, kind, form))
            if len(out) == count:
                break
    return out


def run(count, seed, memory_gb):
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="keras-bn-fuzz-"))
    outcomes, defects, reference = {}, [], {}
    limit_set = False
    try:
        for index, ((name, files, options), kind, form) in enumerate(
            _variants(rng, count)
        ):
            if "json" not in files:
                continue
            config = json.loads(files["json"].read_text())
            if name not in reference:
                model = _load(files["json"], files["weights"], options)
                reference[name] = _predict(model, np.load(files["npz"])["x"])
            if not limit_set and memory_gb:
                # After the first load: the backend's own start-up is counted
                # out; the variants get memory_gb more address space at most.
                _, hard = resource.getrlimit(resource.RLIMIT_AS)
                with open("/proc/self/statm") as statm:
                    mapped = int(statm.read().split()[0]) * resource.getpagesize()
                soft = mapped + int(memory_gb * 2**30)
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
                limit_set = True
            weights = files["weights"]
            if kind == "duplicate key":
                text, suffix = (
                    _duplicate_key_text(files["json"].read_text(), rng),
                    "json",
                )
            elif kind in ("alias", "laughs"):
                laughs = 9 if kind == "laughs" else 0
                text, suffix = _alias_yaml(config, laughs), "yaml"
            else:
                edited = _mutate(config, kind, rng)
                text = None if edited is None else json.dumps(edited)
                suffix = "json" if form != "yaml" else "yaml"
                if text is not None and form == "yaml":
                    text = _alias_yaml(edited, 0)
            if text is None:
                continue
            path = folder / f"v{index}.{suffix}"
            path.write_text(text)
            if form == "model_config" and suffix == "json" and files.get("model"):
                path = folder / f"v{index}.h5"
                shutil.copy(files["model"], path)
                with h5py.File(path, "r+") as file:
                    file.attrs["model_config"] = text
                weights = None
            label = f"{name} {kind} ({path.suffix[1:]})"
            started = time.perf_counter()
            try:
                model = _load(path, weights, options)
                got = _predict(model, np.load(files["npz"])["x"])
                same = got.shape == reference[name].shape and np.allclose(
                    got, reference[name], rtol=1e-5, atol=1e-6
                )
                outcome = "same" if same else (
                    "silent change" if kind in PRESERVING else "changed"
                )  # fmt: skip
            except legacy.LegacyFileError as error:
                outcome = "refused"
                if len(str(error)) > LONGEST_MESSAGE or error.path is None:
                    outcome = "unbounded message"
            except MemoryError:
                outcome = "over the memory limit"
            except Exception as error:  # a defect: reported with its type
                outcome = "other exception"
                label += f": {type(error).__name__}: {str(error)[:200]}"
            if time.perf_counter() - started > SLOW:
                outcome = "slow"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome not in ("refused", "same", "changed"):
                defects.append(f"{outcome}: {label}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return outcomes, defects


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    outcomes, defects = run(args.variants, args.seed, args.memory_gb)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"outcomes": outcomes, "defects": defects,
                          "seconds": round(seconds, 1)}))  # fmt: skip
    else:
        for outcome, count in sorted(outcomes.items()):
            print(f"{outcome:22s} {count}")
        for defect in defects:
            print("DEFECT", defect)
        print(f"{sum(outcomes.values())} variants in {seconds:.0f} s")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
