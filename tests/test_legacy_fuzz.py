"""Fuzzing keras_bn.legacy with damaged variants of valid legacy files.

Each variant (truncations, byte flips, edited attributes and datasets) is
loaded into a model that already holds weights of its own. The load must
either succeed with every weight finite, or raise `LegacyFileError` and
leave the model bit-identical; ``keras-bn inspect`` must answer exit 0, or
exit 1 with one line on stderr, never a traceback.

Hazard: HDF5 1.14 can loop forever on some damage (a run of zeroed bytes
in a root attribute's header, docs/legacy.md); the variants here flip
single bytes (XOR with a non-zero value) and never zero a run, and the seed
is fixed, so the run is the same every time.
"""

import collections
import contextlib
import io
import json
import shutil
import warnings

import h5py
import keras
import numpy as np
import pytest
from legacy_fixtures import EXAMPLES, example_arrays

from keras_bn import BatchNormalization, legacy
from keras_bn.cli import main

BASES = [
    "keras0_sequential",
    "keras0_graph",
    "keras1_weights_1.0.7_theano",
    "keras1_model_1.2.2",
    "keras2_weights_split",
    "keras2_model",
]

HOSTILE_VALUES = [
    "three",
    b"\xff\xfe",
    -1,
    10**12,
    2.5,
    np.nan,
    np.array([1, 2, 3]),
    np.zeros((2, 2)),
    np.array([b"x", b"y"]),
]

BAD_EPSILONS = ["abc", None, float("nan"), float("inf"), 1e308, -1.0, [1e-3]]

BAD_ARRAYS = [
    lambda a: np.full_like(a, np.inf),
    lambda a: np.full_like(a, 1e39),
    lambda a: a * (1 + 1j),
    lambda a: np.array([b"abc"] * a.size),
    lambda a: a.reshape(-1)[:-1] if a.size > 1 else np.zeros((2, 2)),
    lambda a: a.astype("int64"),
    lambda a: np.float64(a.reshape(-1)[0]),
    lambda a: np.zeros((0,)),
    lambda a: -np.abs(a) - 1,
]


def _model(target):
    bn = BatchNormalization() if target == "keras_bn" else None
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3),
            keras.layers.Activation("relu"),
            bn or keras.layers.BatchNormalization(),
        ]
    )


def _attribute_edits(path):
    """``(description, edit)`` for every attribute of the file."""
    edits = []
    with h5py.File(path, "r") as f:
        owners = [f] + [f[name] for name in _members(f, h5py.Group)]
        keys = [(owner.name, key) for owner in owners for key in owner.attrs]
    for owner, key in keys:
        for index, value in enumerate(HOSTILE_VALUES):
            edits.append((f"attr {owner}:{key}={index}", _set_attr(owner, key, value)))
        edits.append((f"delete {owner}:{key}", _delete_attr(owner, key)))
    return edits


def _members(f, kind):
    """The names of every group or dataset in the file (``visit`` stops at
    the first callback that returns anything but None)."""
    names = []

    def collect(name, member):
        if isinstance(member, kind):
            names.append(name)

    f.visititems(collect)
    return names


def _set_attr(owner, key, value):
    def edit(f):
        f[owner].attrs[key] = value

    return edit


def _delete_attr(owner, key):
    def edit(f):
        del f[owner].attrs[key]

    return edit


def _config_edits(path):
    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs:
            return []
        config = json.loads(f.attrs["model_config"])
    edits = []
    for index, epsilon in enumerate(BAD_EPSILONS):
        edited = json.loads(json.dumps(config))
        for layer in edited["config"]:
            if layer["class_name"] == "BatchNormalization":
                layer["config"]["epsilon"] = epsilon
        edits.append(
            (
                f"config epsilon {index}",
                _set_attr("/", "model_config", json.dumps(edited)),
            )
        )
    for mode in (1, 2, "x"):
        edited = json.loads(json.dumps(config))
        edited["config"][-1]["config"]["mode"] = mode
        edits.append(
            (f"config mode {mode}", _set_attr("/", "model_config", json.dumps(edited)))
        )
    deep = "[" * 5000 + "]" * 5000
    edits.append(("config deep", _set_attr("/", "model_config", deep)))
    edits.append(("config not JSON", _set_attr("/", "model_config", "{")))
    return edits


def _dataset_edits(path):
    with h5py.File(path, "r") as f:
        names = _members(f, h5py.Dataset)
    edits = []
    for name in names:
        for index, change in enumerate(BAD_ARRAYS):
            edits.append((f"dataset {name} {index}", _replace_dataset(name, change)))
        edits.append((f"dataset {name} missing", _delete_dataset(name)))
    return edits


def _replace_dataset(name, change):
    def edit(f):
        value = change(np.asarray(f[name][()]))
        del f[name]
        f.create_dataset(name, data=value)

    return edit


def _delete_dataset(name):
    def edit(f):
        del f[name]

    return edit


def _byte_edits(data, rng, count):
    """Truncations, and single bytes XORed with a non-zero value."""
    edits = []
    for size in np.linspace(0, len(data) - 1, count // 2).astype(int):
        edits.append((f"truncate {size}", bytes(data[:size])))
    for offset in rng.integers(0, len(data), count - count // 2):
        damaged = bytearray(data)
        damaged[offset] ^= int(rng.integers(1, 256))
        edits.append((f"flip {offset}", bytes(damaged)))
    return edits


def _variants(tmp_path, rng):
    """``(description, path, load kwargs)`` of every damaged variant."""
    arrays = example_arrays(rng)
    for base in BASES:
        (example,) = [e for e in EXAMPLES if e.name == base]
        original = tmp_path / f"{base}.h5"
        example.write(original, arrays)
        edits = _attribute_edits(original) + _config_edits(original)
        edits += _dataset_edits(original)
        for index, (description, edit) in enumerate(edits):
            path = tmp_path / f"{base}-{index}.h5"
            shutil.copy(original, path)
            try:
                with h5py.File(path, "r+") as f:
                    edit(f)
            except (TypeError, ValueError):
                continue  # h5py cannot store that value: no variant
            yield f"{base}: {description}", path, example.load_kwargs
        for index, (description, data) in enumerate(
            _byte_edits(original.read_bytes(), rng, 16)
        ):
            path = tmp_path / f"{base}-bytes-{index}.h5"
            path.write_bytes(data)
            yield f"{base}: {description}", path, example.load_kwargs


def _inspect(path):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["inspect", str(path)])
    return status, err.getvalue()


def _load(model, path, kwargs):
    """``"loaded"`` or ``"refused"``; fails on anything else."""
    before = [w.copy() for w in model.get_weights()]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            legacy.load_weights(model, path, **kwargs)
    except legacy.LegacyFileError as error:
        assert str(path) in str(error)
        after = model.get_weights()
        for got, want in zip(after, before):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        return "refused"
    for weight in model.get_weights():
        assert np.all(np.isfinite(weight))
    return "loaded"


@pytest.mark.parametrize("target", ["keras_bn", "stock"])
def test_damaged_files_load_or_raise_legacy_file_error(tmp_path, rng, target):
    model = _model(target)
    outcomes = collections.Counter()
    for description, path, kwargs in _variants(tmp_path, rng):
        try:
            outcome = _load(model, path, kwargs)
            status, err = _inspect(path)
        except Exception as error:  # report which variant
            raise AssertionError(f"{description}: {error!r}") from error
        assert status in (0, 1), description
        if status == 1:
            assert err.count("\n") == 1 and "Traceback" not in err, description
        outcomes[outcome] += 1
        outcomes[f"inspect {status}"] += 1
        path.unlink()
    print(f"\nfuzz {target}: {dict(outcomes)}")
    # Both outcomes occur: the variants reach the checks, and not all of
    # them break the file.
    assert outcomes["loaded"] > 20 and outcomes["refused"] > 200
