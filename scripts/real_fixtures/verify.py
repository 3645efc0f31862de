"""Check the ground-truth table of README.md against what the releases did.

For every fixture model, recompute the old release's test-phase predictions
in NumPy (float64) from the arrays its weights file holds, with the
BatchNormalization formula and the convolution kernel convention that
README.md states for that release, and compare with the predictions the
release itself wrote (``y`` in the .npz). A mismatch means the table is
wrong for that release.

    python scripts/real_fixtures/verify.py [tests/fixtures/real]

Needs only NumPy and h5py (any Python 3). Mode-2 models are skipped (they
normalize with the batch's own statistics; checked as such).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np


def bn_semantics(manifest: dict) -> dict:
    """The release's claims, as generate.py recorded them in manifest.json
    (the same as README.md's table)."""
    bn = manifest["batch_norm"]
    return {
        "denominator": bn["mode0_denominator_d"],
        "mode1": bn["mode1_sample_std_s"],
        "flip": bn["conv_kernels_flipped"],
    }


def read_arrays(path: Path, entry: dict) -> list[list[np.ndarray]]:
    groups = [g for g in entry["stored"]["groups"] if g["weights"]]
    out = []
    with h5py.File(path, "r") as f:
        for g in groups:
            out.append(
                [np.asarray(f[g["group"]][n], "float64") for n, _ in g["weights"]]
            )
    if entry["kind"] != "graph":
        return out
    flat = out[0]
    split = []
    per_layer = {"dense": 2, "batch_norm": 4}
    nodes = entry["graph"]["nodes"]
    if len(flat) != sum(per_layer.get(n["layer"]["type"], 0) for n in nodes):
        per_layer["batch_norm"] = 2  # Keras 0.2.0 Graph: gamma and beta only
    for node in nodes:
        n = per_layer.get(node["layer"]["type"], 0)
        if n:
            split.append(flat[:n])
            flat = flat[n:]
    return split


def conv2d(x, kernel, flip, data_format):
    """Valid, stride 1. x: NCHW or NHWC; kernel any stored layout, made
    (out, in, kh, kw) from x's channel count."""
    if data_format == "channels_last":
        x = x.transpose(0, 3, 1, 2)
    c_in = x.shape[1]
    k = kernel
    if k.shape[1] == c_in and k.ndim == 4 and k.shape[2] == k.shape[3]:
        pass  # (out, in, kh, kw)
    elif k.shape[2] == c_in:
        k = k.transpose(3, 2, 0, 1)  # (kh, kw, in, out)
    else:
        raise ValueError(f"kernel {kernel.shape} for {c_in} channels")
    if flip:
        k = k[:, :, ::-1, ::-1]
    o, _, kh, kw = k.shape
    n, _, h, w = x.shape
    out = np.zeros((n, o, h - kh + 1, w - kw + 1))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + h - kh + 1, j : j + w - kw + 1]
            out += np.einsum("nchw,oc->nohw", patch, k[:, :, i, j])
    if data_format == "channels_last":
        out = out.transpose(0, 2, 3, 1)
    return out


def conv1d(x, kernel, flip):
    """x: (n, steps, channels); kernel (k, in, out), (out, in, k, 1) or
    (k, 1, in, out)."""
    c_in = x.shape[2]
    k = kernel
    if k.ndim == 4 and k.shape[1] == c_in:
        k = k[:, :, :, 0].transpose(2, 1, 0)  # (out, in, k, 1) -> (k, in, out)
    elif k.ndim == 4 and k.shape[2] == c_in:
        k = k[:, 0]  # (k, 1, in, out)
    if flip:
        k = k[::-1]
    steps = x.shape[1] - k.shape[0] + 1
    return sum(
        np.einsum("nsc,co->nso", x[:, i : i + steps], k[i]) for i in range(k.shape[0])
    )


def max_pool(x, data_format):
    if data_format == "channels_last":
        x = x.transpose(0, 3, 1, 2)
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    out = x.max(axis=(3, 5))
    if data_format == "channels_last":
        out = out.transpose(0, 2, 3, 1)
    return out


ACT = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
}


def batch_norm(x, arrays, spec, sem):
    gamma, beta, mean, fourth = arrays
    e = spec["epsilon"]
    if spec["mode"] == 1:
        m = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        std = (
            np.sqrt(var + e) if sem["mode1"] == "sqrt(var + epsilon)" else np.sqrt(var)
        )
        return gamma * (x - m) / (std + e) + beta
    if spec["mode"] == 2:
        axes = tuple(a for a in range(x.ndim) if a != spec["axis"] % x.ndim)
        # The batch's own statistics, through the same backend function.
        mean = x.mean(axis=axes)
        fourth = x.var(axis=axes)
        if sem["denominator"] == "std + epsilon":
            fourth = np.sqrt(fourth + e)
    d = {
        "std + epsilon": lambda: fourth + e,
        "sqrt(variance + epsilon)": lambda: np.sqrt(fourth + e),
        "sqrt(variance) + epsilon": lambda: np.sqrt(fourth) + e,
    }[sem["denominator"]]()
    shape = [1] * x.ndim
    if spec["axis"] is None:
        shape = [1, *gamma.shape]
    else:
        shape[spec["axis"]] = -1
    r = lambda a: a.reshape(shape)  # noqa: E731
    return r(gamma) * (x - r(mean)) / r(d) + r(beta)


def apply(spec, x, arrays, sem, flip):
    t = spec["type"]
    if t == "dense":
        w, b = arrays
        return ACT[spec["activation"]](x @ w + b)
    if t == "batch_norm":
        return batch_norm(x, arrays, spec, sem)
    if t == "activation":
        return ACT[spec["activation"]](x)
    if t == "conv2d":
        return ACT[spec["activation"]](
            conv2d(x, arrays[0], flip, spec["data_format"])
            + arrays[1].reshape(
                (1, -1, 1, 1)
                if spec["data_format"] == "channels_first"
                else (1, 1, 1, -1)
            )
        )
    if t == "conv1d":
        return ACT[spec["activation"]](conv1d(x, arrays[0], flip) + arrays[1])
    if t == "max_pool2d":
        return max_pool(x, spec["data_format"])
    if t == "flatten":
        if spec.get("data_format") == "channels_first" and x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)
        return x.reshape(len(x), -1)
    raise ValueError(t)


def predict(entry, arrays, sem, flip, x):
    arrays = list(arrays)
    if "layers" in entry:
        for spec in entry["layers"]:
            if spec["type"] in ("dense", "batch_norm", "conv2d", "conv1d"):
                x = apply(spec, x, arrays.pop(0), sem, flip)
            else:
                x = apply(spec, x, None, sem, flip)
        return x
    tensors = {"x": x}
    for node in entry["graph"]["nodes"]:
        spec = node["layer"]
        ins = [tensors[i] for i in node["inputs"]]
        if spec["type"] == "concatenate":
            tensors[node["name"]] = np.concatenate(ins, axis=spec["axis"])
        elif spec["type"] in ("dense", "batch_norm"):
            tensors[node["name"]] = apply(spec, ins[0], arrays.pop(0), sem, flip)
        else:
            tensors[node["name"]] = apply(spec, ins[0], None, sem, flip)
    return tensors[entry["graph"]["outputs"][0]]


def _bn_specs(entry):
    if "layers" in entry:
        return [s for s in entry["layers"] if s["type"] == "batch_norm"]
    return [
        n["layer"]
        for n in entry["graph"]["nodes"]
        if n["layer"]["type"] == "batch_norm"
    ]


def main(root: Path) -> int:
    bad = 0
    for manifest_path in sorted(root.glob("*/manifest.json")):
        d = manifest_path.parent
        manifest = json.loads(manifest_path.read_text())
        if "batch_norm" not in manifest:
            print(f"?   {d.name}: written by an older generate.py, rerun it")
            bad += 1
            continue
        sem = bn_semantics(manifest)
        flip = sem["flip"]
        for entry in manifest["models"]:
            arrays = read_arrays(d / entry["files"]["weights"], entry)
            if any(len(a) == 2 and a[0].ndim == 1 for a in arrays):
                print(f"--  {d.name}/{entry['name']}: the file holds no running")
                print("    statistics (gamma and beta only): nothing to check")
                continue
            with np.load(d / entry["files"]["npz"]) as data:
                x, y = data["x"].astype("float64"), data["y"]
            got = predict(entry, arrays, sem, flip, x)
            err = float(np.max(np.abs(got - y)) / (1 + np.max(np.abs(y))))
            # The other kernel convention, to show the check can tell.
            other = predict(entry, arrays, sem, not flip, x)
            err_other = float(np.max(np.abs(other - y)) / (1 + np.max(np.abs(y))))
            ok = err < 1e-4
            bad += not ok
            note = ""
            if any(s in entry["name"] for s in ("conv",)):
                note = f"  (other kernel flip: {err_other:.1e})"
            # Every formula that would fit as well: the check must single
            # out the stated one (models with epsilon=0.01 tell them apart).
            fits = []
            for denominator in (
                "std + epsilon",
                "sqrt(variance + epsilon)",
                "sqrt(variance) + epsilon",
            ):
                for mode1 in ("sqrt(var)", "sqrt(var + epsilon)"):
                    alt = dict(sem, denominator=denominator, mode1=mode1)
                    got = predict(entry, arrays, alt, flip, x)
                    e = float(np.max(np.abs(got - y)) / (1 + np.max(np.abs(y))))
                    if e < 1e-4:
                        fits.append((denominator, mode1))
            has = {s["mode"] for s in _bn_specs(entry)}
            fit0 = sorted({f[0] for f in fits}) if has & {0, 2} else []
            fit1 = sorted({f[1] for f in fits}) if 1 in has else []
            note += "  d fits: " + " | ".join(fit0) if fit0 else ""
            note += "  mode-1 s fits: " + " | ".join(fit1) if fit1 else ""
            print(f"{'ok ' if ok else 'BAD'} {d.name}/{entry['name']}: {err:.1e}{note}")
    return bad


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "real"
    sys.exit(1 if main(Path(sys.argv[1]) if len(sys.argv) > 1 else default) else 0)
