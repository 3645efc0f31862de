"""The layer's derivatives and transforms against autodiff of the plain
formula, and integer inputs against float ones, on this backend: the figures
behind tests/test_transforms.py, printed.

    KERAS_BACKEND=jax python scripts/transforms_check.py

For each layer configuration of the tests (modes 0 and 1, per-activation,
channels-last, channels-first, ghost batches, Keras 1.x's mode 1), the
largest relative error in float64 of: the first derivative, a gradient
penalty's (second order), a third derivative, forward mode, and a
Hessian-vector product. Then the largest difference between the outputs for
the same data as uint8 and as float32 (inference and training).
"""

import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import test_transforms as t  # noqa: E402
from conftest import dtype_scope, to_numpy  # noqa: E402

from keras_bn import BatchNormalization  # noqa: E402


def worst(got, expected):
    """Largest error of a list of arrays, relative to the largest value."""
    got = [to_numpy(g) for g in got]
    expected = [to_numpy(e) for e in expected]
    scale = max(np.max(np.abs(e)) for e in expected)
    return max(np.max(np.abs(g - e)) for g, e in zip(got, expected)) / scale


def derivative_errors(case, rng):
    ours, plain, values = t.make_case(case, rng)
    upstream = keras.ops.convert_to_tensor(rng.normal(size=values[0].shape))
    direction = keras.ops.convert_to_tensor(rng.normal(size=values[0].shape))
    tangents = [rng.normal(size=np.shape(v)) for v in values]

    def third(f):
        def projected(*args):
            return keras.ops.sum(t.grad(t.penalty(f, upstream))(*args)[0] * direction)

        return t.grad(projected)(*t.tensors(values))

    def hvp(f):
        if keras.backend.backend() == "torch":
            import torch

            def gradient(*args):
                return torch.func.grad(t.loss(f, upstream), argnums=(0, 1, 2))(*args)

        else:
            gradient = t.grad(t.loss(f, upstream))
        return t.jvp(gradient, t.tensors(values), t.tensors(tangents))

    return {
        "first": worst(
            t.grad(t.loss(ours, upstream))(*t.tensors(values)),
            t.grad(t.loss(plain, upstream))(*t.tensors(values)),
        ),
        "penalty (2nd)": worst(
            t.grad(t.penalty(ours, upstream))(*t.tensors(values)),
            t.grad(t.penalty(plain, upstream))(*t.tensors(values)),
        ),
        "3rd": worst(third(ours), third(plain)),
        "forward": worst(
            t.jvp(ours, t.tensors(values), t.tensors(tangents)),
            t.jvp(plain, t.tensors(values), t.tensors(tangents)),
        ),
        "HVP": worst(hvp(ours), hvp(plain)),
    }


def integer_difference(rng):
    data, weights = t.integer_case(rng)
    largest = 0.0
    for mode in (0, 1):
        for training in (False, True):
            outputs = []
            for kind in ("float32", "uint8"):
                layer = BatchNormalization((3, 4), 1e-3, mode, weights=weights)
                x = keras.ops.convert_to_tensor(data.astype(kind))
                outputs.append(to_numpy(layer(x, training=training)))
            largest = max(largest, float(np.max(np.abs(outputs[0] - outputs[1]))))
    return largest


def main():
    rng = np.random.default_rng(0)
    print(f"backend: {keras.backend.backend()}, float64, relative errors")
    columns = None
    with dtype_scope("float64"):
        for case in sorted(t.CASES):
            errors = derivative_errors(case, rng)
            if columns is None:
                columns = list(errors)
                print("| case | " + " | ".join(columns) + " |")
                print("|---|" + "---:|" * len(columns))
            cells = " | ".join(f"{errors[c]:.1e}" for c in columns)
            print(f"| {case} | {cells} |")
    print(
        f"\nuint8 against float32 inputs, largest difference: "
        f"{integer_difference(rng):.1e}"
    )


if __name__ == "__main__":
    main()
