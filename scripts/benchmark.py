"""Speed and memory of keras_bn.BatchNormalization against the stock layers.

For the backend in ``KERAS_BACKEND``, times (a) inference and (b) a training
step (forward with ``training=True``, then the gradient with respect to the
input and the trainable weights, for a fixed upstream gradient) of:

- ``keras_bn.BatchNormalization(axis=-1)``;
- ``keras.layers.BatchNormalization(axis=-1)``;
- on PyTorch, ``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` (channels-last);
- a fused ``x * a + b`` with per-feature ``a, b``: one read and one write of
  the tensor, the memory-traffic unit the ratios are given in.

Each is compiled where the backend allows: ``jax.jit``,
``tf.function(jit_compile=True)``; eager on PyTorch, plus ``torch.compile``
with ``--torch-compile``. Runs are interleaved (every candidate once per
round, in rotating order) so that load from other processes hits all of them
alike; warm-up calls are excluded; each sample repeats a call enough times to
last a few milliseconds, and the table gives the median per call.

It prints markdown tables (times, ratios, a training step's peak memory where
the backend exposes it, and the inference speed-up of ``fold_batchnorm`` on a
small CNN) and writes the same as JSON.

Usage::

    KERAS_BACKEND=jax python scripts/benchmark.py
    KERAS_BACKEND=torch python scripts/benchmark.py --quick
    KERAS_BACKEND=tensorflow python scripts/benchmark.py --shapes 256x1024 --repeats 30
"""

import argparse
import json
import os
import platform
import statistics
import time

# Keras imports torch before TensorFlow when both are installed, to avoid a
# crash in their shared libraries; so do we.
try:
    import torch
except ImportError:
    torch = None

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bn  # noqa: E402

BACKEND = keras.backend.backend()
DEFAULT_SHAPES = ["256x1024", "4096x1024", "64x32x32x64"]
# A sample repeats a call until it lasts this long, so that timer resolution
# and per-call noise stay small against what is measured.
SAMPLE_SECONDS = 0.004
# Ratio targets from the issue: keras_bn over each reference, at most.
TARGETS = {
    ("train", "keras"): 1.0,
    ("train", "torch"): 1.0,
    ("train", "one-pass"): 6.0,
    ("inference", "one-pass"): 1.2,
}


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
        help="7 rounds and the smallest shape only: a smoke run",
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="on PyTorch, also time the torch.compile'd step of each layer",
    )
    parser.add_argument(
        "--no-fold", action="store_true", help="skip the fold_batchnorm benchmark"
    )
    parser.add_argument(
        "--json",
        default=None,
        help="where to write the results (default: benchmark-<backend>.json)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 7
        args.shapes = args.shapes[:1]
    args.shapes = [parse_shape(text) for text in args.shapes]
    if args.repeats < 3:
        parser.error(f"--repeats: expected at least 3, got {args.repeats}.")
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


def machine():
    """What the numbers were measured on."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                line.split(":", 1)[1].strip()
                for line in cpuinfo
                if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    versions = {"keras": keras.__version__, "numpy": np.__version__}
    backend_module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    versions[BACKEND] = __import__(backend_module[BACKEND]).__version__
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "backend": BACKEND,
        "versions": versions,
        # glibc allocator settings, which decide whether a fresh output
        # buffer costs page faults (see docs/benchmarks.md).
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }


# -- per-backend harnesses -----------------------------------------------------
#
# Each returns (inference, train_step, peak_bytes): two zero-argument
# callables that block until their result is computed, and a function giving
# the peak memory one training step allocates (None where the backend does
# not expose it).


def jax_harness(layer, x, upstream):
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    x = jax.numpy.asarray(x)
    upstream = jax.numpy.asarray(upstream)

    @jax.jit
    def inference(trainable, non_trainable, x):
        return layer.stateless_call(trainable, non_trainable, x, training=False)[0]

    @jax.jit
    def train_step(trainable, non_trainable, x, upstream):
        def forward(x, trainable):
            return layer.stateless_call(trainable, non_trainable, x, training=True)

        y, backward, updated = jax.vjp(forward, x, trainable, has_aux=True)
        return y, backward(upstream), updated

    def peak_bytes():
        # XLA plans a compiled program's buffers ahead: its temporaries plus
        # its outputs are what a step allocates.
        compiled = train_step.lower(trainable, non_trainable, x, upstream).compile()
        analysis = compiled.memory_analysis()
        return analysis.temp_size_in_bytes + analysis.output_size_in_bytes

    return (
        lambda: jax.block_until_ready(inference(trainable, non_trainable, x)),
        lambda: jax.block_until_ready(
            train_step(trainable, non_trainable, x, upstream)
        ),
        peak_bytes,
    )


def tensorflow_harness(layer, x, upstream):
    import tensorflow as tf

    x = tf.constant(x)
    upstream = tf.constant(upstream)

    @tf.function(jit_compile=True)
    def inference(x):
        return layer(x, training=False)

    @tf.function(jit_compile=True)
    def train_step(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        weights = layer.trainable_variables
        return y, tape.gradient(y, [x, *weights], output_gradients=upstream)

    def peak_bytes():
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        result = train_step(x, upstream)
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
        del result
        return peak

    return lambda: inference(x), lambda: train_step(x, upstream), peak_bytes


def torch_harness(call, weights, x, upstream, compile_step=False):
    """``call(x, training)`` is the layer; ``weights`` its trainable tensors."""
    x = torch.tensor(x, requires_grad=True)
    upstream = torch.tensor(upstream)

    def inference():
        with torch.no_grad():
            return call(x, False)

    def train_step():
        y = call(x, True)
        return y, torch.autograd.grad(y, [x, *weights], upstream)

    if compile_step:
        inference = torch.compile(inference)
        train_step = torch.compile(train_step)

    def peak_bytes():
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result = train_step()
            del result
        # Each allocation and free is charged to the innermost operation that
        # made it; replaying them in order gives the high-water mark.
        events = sorted(
            (e for e in prof.events() if e.self_cpu_memory_usage),
            key=lambda e: e.time_range.start,
        )
        live = peak = 0
        for event in events:
            live += event.self_cpu_memory_usage
            peak = max(peak, live)
        return peak

    return inference, train_step, peak_bytes


def layer_harness(layer, x, upstream, compile_step=False):
    layer.build(x.shape)
    if BACKEND == "jax":
        return jax_harness(layer, x, upstream)
    if BACKEND == "tensorflow":
        return tensorflow_harness(layer, x, upstream)
    weights = [v.value for v in layer.trainable_variables]
    return torch_harness(
        lambda x, training: layer(x, training=training),
        weights,
        x,
        upstream,
        compile_step,
    )


def torch_native_harness(x, upstream, compile_step=False):
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

    return torch_harness(call, list(module.parameters()), x, upstream, compile_step)


def one_pass(x, a, b):
    """A jitted ``x * a + b`` (``torch.addcmul`` on PyTorch, which is one pass
    where eager ``x * a + b`` is two)."""
    if BACKEND == "jax":
        import jax

        fused = jax.jit(lambda x, a, b: x * a + b)
        x, a, b = (jax.numpy.asarray(t) for t in (x, a, b))
        return lambda: jax.block_until_ready(fused(x, a, b))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        fused = tf.function(lambda x, a, b: x * a + b, jit_compile=True)
        x, a, b = (tf.constant(t) for t in (x, a, b))
        return lambda: fused(x, a, b)
    x, a, b = (torch.tensor(t) for t in (x, a, b))

    def fused():
        with torch.no_grad():
            return torch.addcmul(b, x, a)

    return fused


# -- timing ------------------------------------------------------------------------


def time_interleaved(functions, repeats):
    """Seconds per call of each function, one sample per round.

    Every round times each function once, starting at a different one each
    round, so that a burst of outside load does not land on one candidate,
    and so that ratios can be taken within a round.
    """
    for function in functions.values():  # warm-up: compilation, caches
        function()
        function()
    calls = {}
    for name, function in functions.items():
        start = time.perf_counter()
        function()
        elapsed = time.perf_counter() - start
        calls[name] = max(1, round(SAMPLE_SECONDS / max(elapsed, 1e-7)))
    samples = {name: [] for name in functions}
    names = list(functions)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            function, count = functions[name], calls[name]
            start = time.perf_counter()
            for _ in range(count):
                function()
            samples[name].append((time.perf_counter() - start) / count)
    return samples


def paired_ratio(samples, name, reference):
    """Median over rounds of ``name``'s time over ``reference``'s in the same
    round: load from other processes drifts, and a ratio taken within one
    round cancels most of it."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[reference]))


def milliseconds(samples):
    return {name: statistics.median(values) * 1e3 for name, values in samples.items()}


def candidates(x, upstream, mode, compile_step=False):
    """The layers to time, by name, as harnesses."""
    harnesses = {
        "keras_bn": layer_harness(
            keras_bn.BatchNormalization(axis=-1, mode=mode), x, upstream, compile_step
        ),
        "keras": layer_harness(
            keras.layers.BatchNormalization(axis=-1), x, upstream, compile_step
        ),
    }
    if BACKEND == "torch":
        harnesses["torch"] = torch_native_harness(x, upstream, compile_step)
    return harnesses


def benchmark_shape(shape, args):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    channels = shape[-1]
    a = rng.normal(size=channels).astype("float32")
    b = rng.normal(size=channels).astype("float32")

    harnesses = candidates(x, upstream, args.mode)
    if BACKEND == "torch" and args.torch_compile:
        for name, compiled in candidates(x, upstream, args.mode, True).items():
            try:
                compiled[1]()
            except Exception as error:
                print(f"torch.compile of {name} failed: {error!r:.200}")
                continue
            harnesses[f"{name} (torch.compile)"] = compiled

    reference = one_pass(x, a, b)
    inference = time_interleaved(
        {"one-pass": reference, **{k: h[0] for k, h in harnesses.items()}},
        args.repeats,
    )
    train = time_interleaved(
        {"one-pass": reference, **{k: h[1] for k, h in harnesses.items()}},
        args.repeats,
    )
    peaks = {}
    for name, harness in harnesses.items():
        try:
            peaks[name] = int(harness[2]())
        except Exception as error:
            print(f"peak memory of {name} not available: {error!r:.200}")
    return {
        "shape": list(shape),
        "inference_ms": milliseconds(inference),
        "train_ms": milliseconds(train),
        "train_peak_bytes": peaks,
        "tensor_bytes": int(x.nbytes),
        "ratios": ratios({"inference": inference, "train": train}),
    }


def ratios(samples_by_task):
    """keras_bn's time over each reference's, with the issue's targets."""
    rows = []
    for task, samples in samples_by_task.items():
        for reference in ("keras", "torch", "one-pass"):
            if reference not in samples:
                continue
            ratio = paired_ratio(samples, "keras_bn", reference)
            target = TARGETS.get((task, reference))
            rows.append(
                {
                    "task": task,
                    "reference": reference,
                    "ratio": ratio,
                    # Fastest round over fastest round: outside load only
                    # ever adds time, so this is the least disturbed view.
                    "ratio_of_minima": min(samples["keras_bn"])
                    / min(samples[reference]),
                    "target": target,
                    "met": None if target is None else bool(ratio <= target),
                }
            )
    return rows


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


def model_inference(model, x):
    if BACKEND == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        x = jax.numpy.asarray(x)
        run = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
        return lambda: jax.block_until_ready(run(trainable, non_trainable, x))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        run = tf.function(lambda x: model(x, training=False), jit_compile=True)
        return lambda: run(x)
    x = torch.tensor(x)

    def run():
        with torch.no_grad():
            return model(x, training=False)

    return run


def benchmark_folding(args):
    rng = np.random.default_rng(0)
    model = small_cnn(rng)
    folded, report = keras_bn.fold_batchnorm(model, return_report=True)
    x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
    original_run = model_inference(model, x)
    folded_run = model_inference(folded, x)
    difference = float(
        np.max(
            np.abs(
                keras.ops.convert_to_numpy(original_run())
                - keras.ops.convert_to_numpy(folded_run())
            )
        )
    )
    samples = time_interleaved(
        {"original": original_run, "folded": folded_run}, args.repeats
    )
    times = milliseconds(samples)
    return {
        "model": "small CNN, input 64x32x32x3, 3 Conv2D + 1 Dense each followed "
        "by a BatchNormalization",
        "batch_normalizations": len(report.folded) + len(report.unfolded),
        "unfolded": report.unfolded,
        "original_ms": times["original"],
        "folded_ms": times["folded"],
        "speedup": paired_ratio(samples, "original", "folded"),
        "max_abs_difference": difference,
    }


# -- report ------------------------------------------------------------------------


def format_shape(shape):
    return "x".join(str(d) for d in shape)


def markdown(report):
    candidates = [
        name for name in report["results"][0]["train_ms"] if name != "one-pass"
    ] + ["one-pass"]
    machine_info = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine_info["versions"].items())
    allocator = " ".join(f"{k}={v}" for k, v in machine_info["malloc_env"].items())
    lines = [
        f"Backend: {machine_info['backend']} ({versions}); "
        f"{machine_info['nproc']} x {machine_info['cpu']}; "
        f"keras_bn mode {report['mode']}, float32, axis=-1; "
        f"{allocator or 'default glibc malloc settings'}.",
        "",
        "Median time per call, ms:",
        "",
        "| shape | task | " + " | ".join(candidates) + " |",
        "|---|---|" + "---:|" * len(candidates),
    ]
    for result in report["results"]:
        for task, key in (("inference", "inference_ms"), ("train step", "train_ms")):
            cells = [
                f"{result[key][name]:.3f}" if name in result[key] else ""
                for name in candidates
            ]
            lines.append(
                f"| {format_shape(result['shape'])} | {task} | "
                + " | ".join(cells)
                + " |"
            )
    lines += [
        "",
        "keras_bn's time over each reference's: the median of the ratios "
        "within a round, and the ratio of the fastest rounds (target: at most):",
        "",
        "| shape | task | reference | ratio | ratio of minima | target | met |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for result in report["results"]:
        for row in result["ratios"]:
            target = "" if row["target"] is None else f"{row['target']:g}"
            met = {None: "", True: "yes", False: "**no**"}[row["met"]]
            lines.append(
                f"| {format_shape(result['shape'])} | {row['task']} | "
                f"{row['reference']} | {row['ratio']:.2f} | "
                f"{row['ratio_of_minima']:.2f} | {target} | {met} |"
            )
    peaks = [r for r in report["results"] if r["train_peak_bytes"]]
    if peaks:
        names = [n for n in candidates if n in peaks[0]["train_peak_bytes"]]
        lines += [
            "",
            "Peak memory of a training step, in units of the input tensor's size:",
            "",
            "| shape | tensor MiB | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names),
        ]
        for result in peaks:
            size = result["tensor_bytes"]
            cells = [
                f"{result['train_peak_bytes'][n] / size:.2f}"
                if n in result["train_peak_bytes"]
                else ""
                for n in names
            ]
            lines.append(
                f"| {format_shape(result['shape'])} | {size / 2**20:.1f} | "
                + " | ".join(cells)
                + " |"
            )
    if report.get("folding"):
        fold = report["folding"]
        lines += [
            "",
            f"fold_batchnorm, {fold['model']}: inference {fold['original_ms']:.2f} ms "
            f"before, {fold['folded_ms']:.2f} ms after folding "
            f"({fold['speedup']:.2f} times faster); "
            f"{fold['batch_normalizations'] - len(fold['unfolded'])} of "
            f"{fold['batch_normalizations']} layers folded; largest difference "
            f"in the predictions {fold['max_abs_difference']:.1e}.",
        ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    report = {"machine": machine(), "mode": args.mode, "repeats": args.repeats}
    report["results"] = []
    for shape in args.shapes:
        print(f"timing {format_shape(shape)} ...", flush=True)
        result = benchmark_shape(shape, args)
        report["results"].append(result)
    if not args.no_fold:
        print("timing fold_batchnorm ...", flush=True)
        report["folding"] = benchmark_folding(args)
    report["seconds"] = time.perf_counter() - started
    print()
    print(markdown(report))
    path = args.json or f"benchmark-{BACKEND}.json"
    with open(path, "w") as out:
        json.dump(report, out, indent=2)
    print(f"\nwrote {path} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
