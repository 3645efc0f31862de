"""Timing harness: per-backend sync, compilation and peak memory, in one place,
and interleaved timing with paired ratios.

Everything that differs between JAX, TensorFlow and PyTorch is in the
"backend" section below; the benchmark scripts call `module_steps`,
`torch_steps` and `compiled_call` and never look at the backend themselves
except to choose what to compare.
"""

import dataclasses
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

BACKEND = keras.backend.backend()
# A sample repeats a call until it lasts this long, so that timer resolution
# and per-call noise stay small against what is measured.
SAMPLE_SECONDS = 0.004


@dataclasses.dataclass
class Steps:
    """Zero-argument callables that block until their result is computed,
    and ``peak_bytes()``: what one training step allocates (None where the
    backend does not tell)."""

    inference: object
    train: object = None
    peak_bytes: object = None


def machine():
    """What the numbers were measured on, with the load average now."""
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
    versions[BACKEND] = __import__(BACKEND).__version__
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
        "load_average": load_average(),
        "torch_threads": torch.get_num_threads() if BACKEND == "torch" else None,
    }


def load_average():
    """The 1, 5 and 15 minute load averages (other processes' work)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# -- backend: threads, sync, compilation, peak memory ------------------------


def set_threads(threads):
    """PyTorch's intra-op threads (``torch.set_num_threads``); None leaves
    the default. On a loaded machine, OpenMP threads that wait at a barrier
    for a descheduled sibling can make a 1 ms step take 100 ms."""
    if threads is None:
        return
    if BACKEND != "torch":
        raise SystemExit("--threads: only the torch backend takes it.")
    torch.set_num_threads(threads)


def to_backend(array):
    """A NumPy array as the backend's tensor (a leaf that needs no gradient)."""
    if BACKEND == "jax":
        import jax

        return jax.numpy.asarray(array)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.constant(array)
    return torch.tensor(array)


def compiled_call(function, *arrays, torch_compile=False):
    """``function(*arrays)``, compiled where the backend allows (``jax.jit``,
    ``tf.function(jit_compile=True)``; eager or ``torch.compile`` under
    ``torch.no_grad`` on PyTorch), as a zero-argument blocking callable."""
    tensors = [to_backend(a) for a in arrays]
    if BACKEND == "jax":
        import jax

        jitted = jax.jit(function)
        return lambda: jax.block_until_ready(jitted(*tensors))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(function, jit_compile=True)
        return lambda: compiled(*tensors)
    run = torch.compile(function) if torch_compile else function

    def call():
        with torch.no_grad():
            return run(*tensors)

    return call


def module_steps(module, x, upstream=None, torch_compile=False):
    """`Steps` of a Keras layer or model on ``x``: ``module(x,
    training=False)``, and, given ``upstream``, a training step: the
    forward pass with ``training=True`` and the gradient of ``sum(y *
    upstream)`` with respect to ``x`` and the trainable weights (running
    statistics update as part of it)."""
    if not module.built:
        module.build(x.shape)
    if BACKEND == "jax":
        return _jax_steps(module, x, upstream)
    if BACKEND == "tensorflow":
        return _tensorflow_steps(module, x, upstream)
    return torch_steps(
        lambda x, training: module(x, training=training),
        [v.value for v in module.trainable_variables],
        x,
        upstream,
        torch_compile,
    )


def _jax_steps(module, x, upstream):
    import jax

    trainable = [v.value for v in module.trainable_variables]
    non_trainable = [v.value for v in module.non_trainable_variables]
    x = jax.numpy.asarray(x)

    @jax.jit
    def inference(trainable, non_trainable, x):
        return module.stateless_call(trainable, non_trainable, x, training=False)[0]

    steps = Steps(lambda: jax.block_until_ready(inference(trainable, non_trainable, x)))
    if upstream is None:
        return steps
    upstream = jax.numpy.asarray(upstream)

    @jax.jit
    def train_step(trainable, non_trainable, x, upstream):
        def forward(x, trainable):
            return module.stateless_call(trainable, non_trainable, x, training=True)

        y, backward, updated = jax.vjp(forward, x, trainable, has_aux=True)
        return y, backward(upstream), updated

    def peak_bytes():
        # XLA plans a compiled program's buffers ahead: its temporaries plus
        # its outputs are what a step allocates.
        compiled = train_step.lower(trainable, non_trainable, x, upstream).compile()
        analysis = compiled.memory_analysis()
        return analysis.temp_size_in_bytes + analysis.output_size_in_bytes

    steps.train = lambda: jax.block_until_ready(
        train_step(trainable, non_trainable, x, upstream)
    )
    steps.peak_bytes = peak_bytes
    return steps


def _tensorflow_steps(module, x, upstream):
    import tensorflow as tf

    x = tf.constant(x)
    inference = tf.function(lambda x: module(x, training=False), jit_compile=True)
    steps = Steps(lambda: inference(x))
    if upstream is None:
        return steps
    upstream = tf.constant(upstream)

    @tf.function(jit_compile=True)
    def train_step(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = module(x, training=True)
        weights = module.trainable_variables
        return y, tape.gradient(y, [x, *weights], output_gradients=upstream)

    steps.train = lambda: train_step(x, upstream)
    steps.peak_bytes = lambda: tensorflow_peak_bytes(steps.train)
    return steps


def tensorflow_peak_bytes(function):
    """Peak of TensorFlow's CPU allocator while ``function()`` runs, above
    what was allocated before."""
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
    except ValueError as error:
        # The default CPU allocator keeps no statistics where TensorFlow
        # does not turn oneDNN on (AMD CPUs, for one); the BFC one does.
        raise ValueError(
            f"{error}; run with TF_CPU_ALLOCATOR_USE_BFC=true for statistics"
        ) from None
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    result = function()
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
    del result
    return peak


def torch_steps(call, weights, x, upstream=None, torch_compile=False):
    """`Steps` on PyTorch of ``call(x, training)``, whose trainable tensors
    are ``weights`` (for `torch.nn` modules as for Keras layers)."""
    x = torch.tensor(x, requires_grad=True)

    def inference():
        with torch.no_grad():
            return call(x, False)

    if torch_compile:
        inference = torch.compile(inference)
    steps = Steps(inference)
    if upstream is None:
        return steps
    upstream = torch.tensor(upstream)

    def train_step():
        y = call(x, True)
        return y, torch.autograd.grad(y, [x, *weights], upstream)

    steps.train = torch.compile(train_step) if torch_compile else train_step
    steps.peak_bytes = lambda: torch_peak_bytes(steps.train)
    return steps


def torch_peak_bytes(function):
    """High-water mark of the allocations PyTorch's profiler records while
    ``function()`` runs."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = function()
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


def peak_bytes_or_none(name, function):
    """``function()`` as an int, or None (with a note) where it fails."""
    if function is None:
        return None
    try:
        return int(function())
    except Exception as error:  # a backend without memory statistics
        print(f"peak memory of {name} not available: {error!r:.200}")
        return None


# -- timing ------------------------------------------------------------------


def time_interleaved(functions, repeats, sample_seconds=SAMPLE_SECONDS):
    """Seconds per call of each function, one sample per round.

    Every round times each function once, starting at a different one each
    round, so that a burst of outside load does not land on one candidate,
    and so that ratios can be taken within a round. Two warm-up calls each
    (compilation, caches) are not timed.
    """
    for function in functions.values():
        function()
        function()
    calls = {}
    for name, function in functions.items():
        start = time.perf_counter()
        function()
        elapsed = time.perf_counter() - start
        calls[name] = max(1, round(sample_seconds / max(elapsed, 1e-7)))
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


def ratio_of_minima(samples, name, reference):
    """Fastest round over fastest round: outside load only ever adds time,
    so this is the least disturbed view."""
    return min(samples[name]) / min(samples[reference])


def milliseconds(samples):
    return {name: statistics.median(values) * 1e3 for name, values in samples.items()}


def ratio_row(samples, name, reference, target=None, **extra):
    """One row of a ratio table: paired median, ratio of minima, target."""
    ratio = paired_ratio(samples, name, reference)
    return {
        **extra,
        "candidate": name,
        "reference": reference,
        "ratio": ratio,
        "ratio_of_minima": ratio_of_minima(samples, name, reference),
        "target": target,
        "met": None if target is None else bool(ratio <= target),
    }


def parse_with_common_options(parser, argv, json_stem):
    """Adds the options every benchmark script takes (``--threads``,
    ``--json``), parses, and checks ``--repeats`` (a median needs 3)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="on PyTorch, intra-op threads (default: PyTorch's)",
    )
    parser.add_argument(
        "--json",
        default=None,
        help=f"where to write the results (default: {json_stem}-<backend>.json)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error(f"--repeats: expected at least 3, got {args.repeats}.")
    return args
