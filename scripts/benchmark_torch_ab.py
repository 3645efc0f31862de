"""A/B on eager PyTorch: keras_bn's training step as it is, against the same
layer with its running-statistics update done in place with torch.

``keras_bn._training.update_running`` computes the seed's moving average on
the variables' tensors (``functional.detached_like`` and ``constant_like``
prepare the batch statistics and the momentum without Keras' dispatch) and
writes it with ``Variable.assign``, which respects Keras' stateless scopes.
The "B" layer replaces it, through a monkeypatch that only that layer
sees, by ``running.mul_(momentum).add_(batch, alpha=1 - momentum)`` under
``torch.no_grad`` (the common case: no mask, no ``skip_non_finite``): what
is left to gain by writing in place. Both layers and the floor
(``keras.layers.Identity``) are timed interleaved in one process; the ratio
B / A is the median of the within-round ratios. The running statistics of
the two must agree (checked, printed).

Usage::

    KERAS_BACKEND=torch python scripts/benchmark_torch_ab.py [--threads 1]
"""

import argparse

import keras
import numpy as np
import torch
from bench import harness, report

import keras_bn
from keras_bn import _training

ORIGINAL = _training.update_running


def update_in_place(layer, mean, std, count=None, nonempty=None):
    """`_training.update_running` for the "B" layer, in place with torch."""
    common = count is None and nonempty is None and not layer.skip_non_finite
    if not getattr(layer, "ab_in_place", False) or not common:
        return ORIGINAL(layer, mean, std, count, nonempty)
    momentum = layer.momentum
    with torch.no_grad():
        for variable, batch in ((layer.running_mean, mean), (layer.running_std, std)):
            running = variable.value
            batch = batch.detach().reshape(running.shape).to(running.dtype)
            running.mul_(momentum).add_(batch, alpha=1.0 - momentum)


def agreement(x, upstream, steps=3):
    """Largest difference between the running statistics of an A and a B
    layer after the same ``steps`` training steps."""
    a, b = keras_bn.BatchNormalization(), keras_bn.BatchNormalization()
    b.ab_in_place = True
    for layer in (a, b):
        train = harness.module_steps(layer, x, upstream).train
        for _ in range(steps):
            train()
    return max(
        float(np.max(np.abs(v.numpy() - w.numpy())))
        for v, w in zip(a.non_trainable_variables, b.non_trainable_variables)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["32x16", "256x1024"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if harness.BACKEND != "torch":
        raise SystemExit("KERAS_BACKEND=torch only.")
    harness.set_threads(args.threads)
    _training.update_running = update_in_place
    print(report.machine_line(harness.machine(), "keras_bn mode 0, float32"))
    rows = []
    for text in args.shapes:
        shape = tuple(int(d) for d in text.split("x"))
        rng = np.random.default_rng(0)
        x = rng.normal(1.0, 2.0, size=shape).astype("float32")
        upstream = rng.normal(size=shape).astype("float32")
        a, b = keras_bn.BatchNormalization(), keras_bn.BatchNormalization()
        b.ab_in_place = True
        steps = {
            "A (as is)": harness.module_steps(a, x, upstream),
            "B (in-place update)": harness.module_steps(b, x, upstream),
            report.FLOOR: harness.module_steps(keras.layers.Identity(), x, upstream),
        }
        samples = harness.time_interleaved(
            {k: s.train for k, s in steps.items()}, args.repeats
        )
        ms = harness.milliseconds(samples)
        agree = agreement(x, upstream)
        rows.append(
            [
                text,
                *(f"{ms[k]:.3f}" for k in steps),
                f"{ms['A (as is)'] - ms['B (in-place update)']:.3f}",
                f"{harness.paired_ratio(samples, *list(steps)[1::-1]):.2f}",
                f"{agree:.1e}",
            ]
        )
    print()
    print(
        "\n".join(
            report.table(
                [
                    "shape",
                    *(f"{k}, ms" for k in steps),
                    "saved, ms",
                    "B / A",
                    "running stats differ by",
                ],
                rows,
            )
        )
    )


if __name__ == "__main__":
    main()
