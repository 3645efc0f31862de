"""The largest error of every layer family against the real releases.

For each model of ``tests/fixtures/real_zoo/`` (one per layer family and
release, written by the release itself: scripts/real_fixtures/zoo.py), the
architecture and weights are rebuilt with `keras_bn.legacy.load_model` into
keras_bn's BatchNormalization and into the stock layer, and the whole-model
file too where there is one; the table gives, per family and release, the
largest ``max |keras 3 - release| / max |release|`` over those loads, on
the backend Keras runs on (``KERAS_BACKEND``). "-": the release has no such
layer (its manifest says why).

    KERAS_BACKEND=jax python scripts/layer_family_errors.py
"""

import json
import sys
import warnings
from pathlib import Path

import keras
import numpy as np

from keras_bn import legacy

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "real_zoo"


def _error(model, arrays):
    x = list(arrays["x"]) if len(model.inputs) > 1 else arrays["x"]
    got = model.predict(x, batch_size=arrays["y"].shape[0], verbose=0)
    scale = max(float(np.max(np.abs(arrays["y"]))), 1e-6)
    return float(np.max(np.abs(got - arrays["y"]))) / scale


def _largest(directory, manifest, entry):
    files = entry["files"]
    options = {}
    if manifest["release"].startswith("1."):
        options["dim_ordering"] = "th" if manifest["channels_first"] else "tf"
    arrays = np.load(directory / files["npz"])
    loads = [
        (directory / files["json"], {"weights": directory / files["weights"]}, t)
        for t in ("keras_bn", "keras")
    ]
    if files.get("model"):
        loads += [(directory / files["model"], {}, t) for t in ("keras_bn", "keras")]
    errors = []
    for path, extra, target in loads:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = legacy.load_model(
                    path, batch_normalization=target, **options, **extra
                )
        except legacy.LegacyFileError as error:
            if target == "keras" and error.field == "mode":
                continue  # modes 1 and 2 need keras_bn: refused by name
            raise
        errors.append(_error(model, arrays))
    return max(errors)


def main():
    table, releases = {}, []
    for directory in sorted(ROOT.iterdir()):
        manifest = json.loads((directory / "manifest.json").read_text())
        releases.append(directory.name)
        for entry in manifest["models"]:
            table.setdefault(entry["name"], {})[directory.name] = _largest(
                directory, manifest, entry
            )
        print(f"{directory.name}: done", file=sys.stderr)
    print(f"backend: {keras.backend.backend()}")
    print("| family | " + " | ".join(releases) + " |")
    print("|---|" + "---:|" * len(releases))
    for family, row in table.items():
        cells = [f"{row[r]:.1e}" if r in row else "-" for r in releases]
        print(f"| {family} | " + " | ".join(cells) + " |")
    worst = max(max(row.values()) for row in table.values())
    print(f"largest: {worst:.1e} over {sum(map(len, table.values()))} models")


if __name__ == "__main__":
    main()
