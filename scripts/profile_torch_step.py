"""Where a training step's time goes on eager PyTorch: kernels, and Python.

Runs, interleaved in one process under ``torch.profiler``, the training step
of ``scripts/benchmark.py`` (forward with ``training=True``, then the
gradient of ``sum(y * upstream)`` with respect to the input and the
trainable weights) for:

- ``keras_bn.BatchNormalization(axis=-1)``;
- ``torch.nn.BatchNorm1d`` (the reference);
- the floor every Keras layer pays: ``keras.layers.Identity`` and a layer
  computing ``x * gamma`` (one ``keras.ops`` call and one weight).

For each it prints, in ms per step: the whole step (the profiler's span
around it), the time inside ATen's kernels (the self time of ``aten::``
operators: the arithmetic), and the rest (Python: Keras' ``Layer.__call__``
and dispatch, keras_bn's own code, autograd's bookkeeping), then keras_bn's
kernels one by one against ``torch.nn.BatchNorm1d``'s. The profiler adds its
own cost to every operator: the split, not the totals, is what to read (the
totals are in ``scripts/benchmark.py``).

Usage::

    KERAS_BACKEND=torch python scripts/profile_torch_step.py
    KERAS_BACKEND=torch python scripts/profile_torch_step.py --shapes 32x16 --threads 2
"""

import argparse
import collections

import keras
import numpy as np
import torch
from bench import harness
from benchmark import Scale, parse_shape
from torch.profiler import ProfilerActivity, profile, record_function

import keras_bn

STEPS = 30


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes", nargs="+", type=parse_shape, default=["256x1024", "4096x1024"]
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.shapes = [parse_shape(s) if isinstance(s, str) else s for s in args.shapes]
    return args


def steps_for(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    candidates = {
        "keras_bn": keras_bn.BatchNormalization(axis=-1),
        "identity layer": keras.layers.Identity(),
        "x*gamma layer": Scale(),
    }
    steps = {
        name: harness.module_steps(layer, x, upstream).train
        for name, layer in candidates.items()
    }
    module = torch.nn.BatchNorm1d(shape[-1])
    steps["torch.nn.BatchNorm1d"] = harness.torch_steps(
        lambda x, training: module.train(training)(x),
        list(module.parameters()),
        x,
        upstream,
    ).train
    return steps


def split(events):
    """Per name: (span ms, ATen kernel ms, per-operator kernel ms), per step,
    from the profiler's events (ATen operators nested under the span)."""
    spans = {}
    kernels = collections.defaultdict(float)
    by_op = collections.defaultdict(lambda: collections.defaultdict(float))
    for event in events:
        if event.name.startswith("step: "):
            name = event.name[len("step: ") :]
            spans[name] = spans.get(name, 0.0) + event.cpu_time_total
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("step: "):
            parent = parent.cpu_parent
        if parent is not None:
            name = parent.name[len("step: ") :]
            kernels[name] += event.self_cpu_time_total
            by_op[name][event.name] += event.self_cpu_time_total
    return {
        name: (
            spans[name] / STEPS / 1e3,
            kernels[name] / STEPS / 1e3,
            {op: t / STEPS / 1e3 for op, t in by_op[name].items()},
        )
        for name in spans
    }


def main(argv=None):
    args = parse_args(argv)
    harness.set_threads(args.threads)
    versions = f"torch {torch.__version__}, keras {keras.__version__}"
    print(f"{versions}, threads {args.threads}")
    for shape in args.shapes:
        steps = steps_for(shape)
        for step in steps.values():  # warm-up
            for _ in range(3):
                step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(STEPS):
                for name, step in steps.items():
                    with record_function(f"step: {name}"):
                        step()
        results = split(prof.events())
        label = "x".join(map(str, shape))
        print(f"\n{label}, ms per training step (under the profiler):\n")
        print("| layer | whole step | ATen kernels | the rest (Python, dispatch) |")
        print("|---|---:|---:|---:|")
        for name, (total, kernels, _) in results.items():
            print(f"| {name} | {total:.3f} | {kernels:.3f} | {total - kernels:.3f} |")
        ours, reference = results["keras_bn"][2], results["torch.nn.BatchNorm1d"][2]
        print(f"\n{label}, ATen operators over 0.01 ms a step:\n")
        print("| operator | keras_bn | torch.nn.BatchNorm1d |")
        print("|---|---:|---:|")
        for op in sorted(set(ours) | set(reference), key=lambda o: -ours.get(o, 0)):
            if max(ours.get(op, 0), reference.get(op, 0)) >= 0.01:
                print(f"| {op} | {ours.get(op, 0):.3f} | {reference.get(op, 0):.3f} |")


if __name__ == "__main__":
    main()
