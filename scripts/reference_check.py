"""Largest difference between keras_bn.BatchNormalization and the NumPy
restatement of the seed's formulas (tests/reference.py), on this backend.

    KERAS_BACKEND=jax python scripts/reference_check.py

Outputs in both modes and both phases, and the running estimates after three
training steps, for input ranks 2 to 4, in float32 and float64.
"""

import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from reference import (  # noqa: E402
    seed_batch_statistics,
    seed_featurewise,
    seed_running_update,
    seed_samplewise,
)

from keras_bn import BatchNormalization  # noqa: E402

if keras.backend.backend() == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)


def largest_differences(dtype, rng):
    worst = {}

    def record(what, got, want):
        error = float(np.max(np.abs(keras.ops.convert_to_numpy(got) - want)))
        worst[what] = max(worst.get(what, 0.0), error)

    for shape in [(64, 32), (16, 8, 6), (8, 6, 5, 4)]:
        for mode in (0, 1):
            layer = BatchNormalization(shape[1:], 1e-3, mode, 0.9, dtype=dtype)
            gamma = rng.uniform(0.5, 1.5, shape[1:])
            beta = rng.normal(size=shape[1:])
            layer.set_weights([gamma, beta, np.zeros(shape[1:]), np.ones(shape[1:])])
            running_mean, running_std = np.zeros(shape[1:]), np.ones(shape[1:])
            for _ in range(3):
                x = rng.normal(2.0, 3.0, size=shape).astype(dtype)
                y = layer(x, training=True)
                mean, std = seed_batch_statistics(x, 1e-3)
                if mode == 0:
                    want = seed_featurewise(x, gamma, beta, mean, std, 1e-3)
                else:
                    want = seed_samplewise(x, gamma, beta, 1e-3)
                record(f"mode {mode} training output", y, want)
                running_mean = seed_running_update(running_mean, mean[0], 0.9)
                running_std = seed_running_update(running_std, std[0], 0.9)
            record("running_mean", layer.get_weights()[2], running_mean)
            record("running_std", layer.get_weights()[3], running_std)
            x = rng.normal(2.0, 3.0, size=shape).astype(dtype)
            if mode == 0:
                want = seed_featurewise(x, gamma, beta, running_mean, running_std, 1e-3)
            else:
                want = seed_samplewise(x, gamma, beta, 1e-3)
            record(f"mode {mode} inference output", layer(x), want)
    return worst


rng = np.random.default_rng(0)
print(f"backend {keras.backend.backend()}: largest |keras_bn - NumPy reference|")
print("| quantity | float32 | float64 |\n|---|---:|---:|")
by_dtype = {dtype: largest_differences(dtype, rng) for dtype in ("float32", "float64")}
for what in by_dtype["float32"]:
    print(
        f"| {what} | {by_dtype['float32'][what]:.2e} | "
        f"{by_dtype['float64'][what]:.2e} |"
    )
