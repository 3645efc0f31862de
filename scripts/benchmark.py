"""Speed and memory of keras_bn.BatchNormalization against the stock layers.

For the backend in ``KERAS_BACKEND``, times (a) inference and (b) a training
step (forward with ``training=True``, then the gradient with respect to the
input and the trainable weights, for a fixed upstream gradient) of:

- ``keras_bn.BatchNormalization(axis=-1)``;
- ``keras.layers.BatchNormalization(axis=-1)``;
- in mode 0, both with Batch Renormalization (``renorm=True``; keras_bn with
  ``renorm_momentum=0.99``, Keras' two-rate design and default);
- on PyTorch, ``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` (channels-last), and
  the floor every Keras layer pays there: ``keras.layers.Identity`` and a
  layer computing ``x * gamma``;
- a fused ``x * a + b`` with per-feature ``a, b``: one read and one write of
  the tensor, the memory-traffic unit the ratios are given in.

Each is compiled where the backend allows: ``jax.jit``,
``tf.function(jit_compile=True)``; eager on PyTorch, plus ``torch.compile``
with ``--torch-compile``. Runs are interleaved (every candidate once per
round, in rotating order) so that load from other processes hits all of them
alike; warm-up calls are excluded; each sample repeats a call enough times to
last a few milliseconds, and the table gives the median per call. The timing
and the per-backend code are in ``scripts/bench/harness.py``, the tables in
``scripts/bench/report.py``.

It prints markdown tables (times, ratios, a training step's peak memory where
the backend exposes it, the PyTorch floor, and the inference speed-up of
``fold_batchnorm`` on a small CNN) and writes the same as JSON.

Usage::

    KERAS_BACKEND=jax python scripts/benchmark.py
    KERAS_BACKEND=torch python scripts/benchmark.py --quick
    KERAS_BACKEND=tensorflow python scripts/benchmark.py --shapes 256x1024 --repeats 30
"""

import argparse
import inspect
import time

# Keras imports torch before TensorFlow when both are installed, to avoid a
# crash in their shared libraries; so do we.
try:
    import torch
except ImportError:
    torch = None

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench import harness, report  # noqa: E402
from bench.harness import BACKEND  # noqa: E402

import keras_bn  # noqa: E402

DEFAULT_SHAPES = ["256x1024", "4096x1024", "64x32x32x64"]
# --quick: tiny shapes, 2 rounds, a batch of 4 for the folding CNN.
QUICK_SHAPES = ["32x16", "4x4x4x8"]
QUICK_REPEATS = 2
# Ratio targets from the issue: keras_bn over each reference, at most.
TARGETS = {
    ("train", "keras"): 1.0,
    ("train", "torch"): 1.0,
    ("train", "one-pass"): 6.0,
    ("inference", "one-pass"): 1.2,
    ("train", "keras renorm"): 1.0,
}
# keras_bn's candidate for each reference (the renorm steps compare alike).
CANDIDATE = {"keras renorm": "keras_bn renorm"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=DEFAULT_SHAPES,
        help="input shapes as NxC or NxHxWxC (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=25,
        help="timed rounds per shape, after warm-up (default: %(default)s)",
    )
    parser.add_argument(
        "--mode",
        type=int,
        choices=(0, 1),
        default=0,
        help="keras_bn mode to time (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: shapes {' '.join(QUICK_SHAPES)}, {QUICK_REPEATS} "
        "rounds, a batch of 4 for the folding CNN",
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="on PyTorch, also time the torch.compile'd step of each layer",
    )
    parser.add_argument(
        "--no-fold", action="store_true", help="skip the fold_batchnorm benchmark"
    )
    args = harness.parse_with_common_options(parser, argv, "benchmark")
    args.fold_batch = 64
    if args.quick:
        args.repeats, args.shapes, args.fold_batch = QUICK_REPEATS, QUICK_SHAPES, 4
    args.shapes = [parse_shape(text) for text in args.shapes]
    return args


def parse_shape(text):
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (2, 4) or min(shape) < 1:
        raise SystemExit(
            f"--shapes: expected NxC or NxHxWxC with positive sizes, got {text!r}."
        )
    return shape


# -- what is timed -------------------------------------------------------------


class Scale(keras.layers.Layer):
    """``x * gamma``: the least a Keras layer with a weight can do."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.gamma


def torch_native_steps(x, upstream, compile_step=False):
    """``torch.nn.BatchNorm1d`` on (N, C), ``BatchNorm2d`` on a channels-last
    view of (N, H, W, C): the same per-channel statistics as axis=-1."""
    channels = x.shape[-1]
    if x.ndim == 2:
        module = torch.nn.BatchNorm1d(channels)

        def call(x, training):
            return module.train(training)(x)

    else:
        module = torch.nn.BatchNorm2d(channels)

        def call(x, training):
            # permute gives NCHW with channels-last strides, which PyTorch's
            # CPU kernels handle without a copy.
            y = module.train(training)(x.permute(0, 3, 1, 2))
            return y.permute(0, 2, 3, 1)

    return harness.torch_steps(
        call, list(module.parameters()), x, upstream, compile_step
    )


def one_pass(x, a, b):
    """``x * a + b`` compiled (``torch.addcmul`` on PyTorch, which is one pass
    where eager ``x * a + b`` is two)."""
    if BACKEND == "torch":
        return harness.compiled_call(lambda x, a, b: torch.addcmul(b, x, a), x, a, b)
    return harness.compiled_call(lambda x, a, b: x * a + b, x, a, b)


def candidates(x, upstream, mode, compile_step=False):
    """The layers to time, by name, as `harness.Steps`."""
    layers = {
        "keras_bn": keras_bn.BatchNormalization(axis=-1, mode=mode),
        "keras": keras.layers.BatchNormalization(axis=-1),
    }
    stock_renorm = (
        "renorm" in inspect.signature(keras.layers.BatchNormalization).parameters
    )
    if mode == 0 and stock_renorm:  # Keras' own renorm: Keras 3.11 and later
        layers["keras_bn renorm"] = keras_bn.BatchNormalization(
            axis=-1, renorm=True, renorm_momentum=0.99
        )
        layers["keras renorm"] = keras.layers.BatchNormalization(axis=-1, renorm=True)
    if BACKEND == "torch" and not compile_step:
        layers[report.FLOOR] = keras.layers.Identity()
        layers[report.FLOOR_ONE_OP] = Scale()
    steps = {
        name: harness.module_steps(layer, x, upstream, compile_step)
        for name, layer in layers.items()
    }
    if BACKEND == "torch":
        steps["torch"] = torch_native_steps(x, upstream, compile_step)
    return steps


def benchmark_shape(shape, args):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    channels = shape[-1]
    a = rng.normal(size=channels).astype("float32")
    b = rng.normal(size=channels).astype("float32")

    steps = candidates(x, upstream, args.mode)
    if BACKEND == "torch" and args.torch_compile:
        for name, compiled in candidates(x, upstream, args.mode, True).items():
            try:
                compiled.train()
            except Exception as error:
                print(f"torch.compile of {name} failed: {error!r:.200}")
                continue
            steps[f"{name} (torch.compile)"] = compiled

    reference = one_pass(x, a, b)
    samples = {
        task: harness.time_interleaved(
            {"one-pass": reference, **{k: getattr(s, attr) for k, s in steps.items()}},
            args.repeats,
        )
        for task, attr in (("inference", "inference"), ("train", "train"))
    }
    peaks = {}
    for name, step in steps.items():
        if name in (report.FLOOR, report.FLOOR_ONE_OP):
            continue
        peak = harness.peak_bytes_or_none(name, step.peak_bytes)
        if peak is not None:
            peaks[name] = peak
    return {
        "shape": list(shape),
        "inference_ms": harness.milliseconds(samples["inference"]),
        "train_ms": harness.milliseconds(samples["train"]),
        "train_peak_bytes": peaks,
        "tensor_bytes": int(x.nbytes),
        "ratios": [
            harness.ratio_row(
                task_samples,
                CANDIDATE.get(reference, "keras_bn"),
                reference,
                TARGETS.get((task, reference)),
                task=task,
            )
            for task, task_samples in samples.items()
            for reference in ("keras", "torch", "one-pass", "keras renorm")
            if reference in task_samples
            and (task == "train" or reference != "keras renorm")
        ],
    }


# -- fold_batchnorm on a small CNN ------------------------------------------------


def small_cnn(rng):
    """Two conv blocks and a dense block, each with a BatchNormalization,
    with non-trivial BN weights so that folding changes the kernels."""
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    h = layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    h = keras_bn.BatchNormalization(axis=-1)(h)
    h = layers.ReLU()(h)
    h = layers.Conv2D(64, 3, padding="same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU()(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Conv2D(64, 3, padding="same")(h)
    h = keras_bn.BatchNormalization(axis=-1)(h)
    h = layers.ReLU()(h)
    h = layers.GlobalAveragePooling2D()(h)
    h = layers.Dense(64)(h)
    h = keras_bn.BatchNormalization()(h)
    h = layers.ReLU()(h)
    outputs = layers.Dense(10)(h)
    model = keras.Model(inputs, outputs)
    for layer in model.layers:
        if isinstance(layer, (keras_bn.BatchNormalization, layers.BatchNormalization)):
            weights = layer.get_weights()
            shape = weights[0].shape
            fresh = [
                rng.uniform(0.5, 1.5, shape),
                rng.normal(0.0, 0.5, shape),
                rng.normal(0.0, 0.5, shape),
                rng.uniform(0.5, 2.0, shape),
            ]
            layer.set_weights([w.astype(v.dtype) for w, v in zip(fresh, weights)])
    return model


def benchmark_folding(args):
    rng = np.random.default_rng(0)
    model = small_cnn(rng)
    folded, fold_report = keras_bn.fold_batchnorm(model, return_report=True)
    x = rng.normal(size=(args.fold_batch, 32, 32, 3)).astype("float32")
    original_run = harness.module_steps(model, x).inference
    folded_run = harness.module_steps(folded, x).inference
    difference = float(
        np.max(
            np.abs(
                keras.ops.convert_to_numpy(original_run())
                - keras.ops.convert_to_numpy(folded_run())
            )
        )
    )
    samples = harness.time_interleaved(
        {"original": original_run, "folded": folded_run}, args.repeats
    )
    times = harness.milliseconds(samples)
    return {
        "model": f"small CNN, input {args.fold_batch}x32x32x3, 3 Conv2D + 1 Dense "
        "each followed by a BatchNormalization",
        "batch_normalizations": len(fold_report.folded) + len(fold_report.unfolded),
        "unfolded": fold_report.unfolded,
        "original_ms": times["original"],
        "folded_ms": times["folded"],
        "speedup": harness.paired_ratio(samples, "original", "folded"),
        "max_abs_difference": difference,
    }


def main(argv=None):
    args = parse_args(argv)
    harness.set_threads(args.threads)
    started = time.perf_counter()
    results = {"machine": harness.machine(), "mode": args.mode}
    results.update(repeats=args.repeats, results=[])
    for shape in args.shapes:
        print(f"timing {report.format_shape(shape)} ...", flush=True)
        results["results"].append(benchmark_shape(shape, args))
    if not args.no_fold:
        print("timing fold_batchnorm ...", flush=True)
        results["folding"] = benchmark_folding(args)
    results["seconds"] = time.perf_counter() - started
    print()
    print(report.layer_markdown(results))
    path = args.json or f"benchmark-{BACKEND}.json"
    report.write_json(results, path)
    print(f"\nwrote {path} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
