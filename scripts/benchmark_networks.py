"""Whole networks with the stock BatchNormalization and with keras_bn's.

For the backend in ``KERAS_BACKEND``, builds each network with
``keras.layers.BatchNormalization``, converts every one of those layers with
``keras_bn.convert.from_keras`` (``keras.models.clone_model`` with a
``clone_function``; the other layers keep their weights), folds the
converted model with ``keras_bn.fold_batchnorm``, and times, interleaved in
one process (every candidate once per round, in rotating order):

- a training step, ``model.train_on_batch(x, y)`` (SGD, sparse categorical
  cross-entropy; Keras' own compiled step: XLA on JAX and TensorFlow, eager
  on PyTorch), stock against keras_bn;
- prediction, ``model.predict_on_batch(x)`` (the compiled predict function
  without ``predict()``'s per-call data pipeline), stock, keras_bn, and
  keras_bn folded;

and the peak memory of a forward and backward pass (gradients with respect
to the input and the weights, no optimizer) of the stock and keras_bn
models. Networks: ``keras.applications.ResNet50`` and ``MobileNetV2``
(``weights=None``, 10 classes) and a plain channels-last conv net with a
BatchNormalization after each convolution.

Targets: keras_bn's training step at most the stock layer's, its peak memory
no higher; the folded model's prediction at least 1.2 times as fast as the
unfolded one where layers fold.

Usage::

    KERAS_BACKEND=jax python scripts/benchmark_networks.py
    KERAS_BACKEND=torch python scripts/benchmark_networks.py --quick
    KERAS_BACKEND=tensorflow TF_CPU_ALLOCATOR_USE_BFC=true \\
        python scripts/benchmark_networks.py --networks convnet --batch 16
"""

import argparse
import time

# Keras imports torch before TensorFlow when both are installed, to avoid a
# crash in their shared libraries; so do we.
try:
    import torch  # noqa: F401
except ImportError:
    pass

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench import harness, report  # noqa: E402
from bench.harness import BACKEND  # noqa: E402

import keras_bn  # noqa: E402
from keras_bn.convert import from_keras  # noqa: E402

NETWORKS = ("resnet50", "mobilenetv2", "convnet")
QUICK_NETWORKS = ("convnet",)
CLASSES = 10
TRAIN_TARGET = 1.0  # keras_bn's step over the stock one's, at most
FOLD_TARGET = 1.2  # unfolded prediction time over folded, at least


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=NETWORKS,
        default=None,
        help=f"default: all ({' '.join(NETWORKS)}); with --quick, "
        f"{' '.join(QUICK_NETWORKS)}",
    )
    parser.add_argument("--size", type=int, default=32, help="input height/width")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed rounds (default: %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: batch 2, 2 rounds, and by default the conv net only",
    )
    args = harness.parse_with_common_options(parser, argv, "networks")
    if args.networks is None:
        args.networks = QUICK_NETWORKS if args.quick else NETWORKS
    if args.quick:
        args.batch, args.repeats = 2, 2
    return args


# -- the networks ------------------------------------------------------------


def convnet(input_shape):
    """Six 3x3 convolutions (32 to 128 channels, two poolings), each followed
    by a BatchNormalization and a ReLU; global pooling and a Dense."""
    layers = keras.layers
    inputs = keras.Input(input_shape)
    h = inputs
    for index, channels in enumerate((32, 32, 64, 64, 128, 128)):
        h = layers.Conv2D(channels, 3, padding="same")(h)
        h = layers.BatchNormalization()(h)
        h = layers.ReLU()(h)
        if index in (1, 3):
            h = layers.MaxPooling2D()(h)
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(CLASSES, activation="softmax")(h)
    return keras.Model(inputs, outputs, name="convnet")


def build(name, size):
    """The network with stock BatchNormalization layers, with non-trivial
    running statistics and affine weights (else folding changes nothing)."""
    shape = (size, size, 3)
    if name == "convnet":
        model = convnet(shape)
    else:
        application = {
            "resnet50": keras.applications.ResNet50,
            "mobilenetv2": keras.applications.MobileNetV2,
        }[name]
        model = application(weights=None, input_shape=shape, classes=CLASSES)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, shape),
                    rng.normal(0.0, 0.2, shape),
                    rng.normal(0.0, 0.2, shape),
                    rng.uniform(0.5, 2.0, shape),
                ][4 - len(layer.weights) :]
            )
    return model


def with_keras_bn(model):
    """A copy of ``model`` with every stock BatchNormalization converted."""
    originals = {}

    def clone_function(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return from_keras(layer)
        copy = layer.__class__.from_config(layer.get_config())
        originals[id(copy)] = layer
        return copy

    converted = keras.models.clone_model(model, clone_function=clone_function)
    for layer in converted.layers:
        if id(layer) in originals:
            layer.set_weights(originals[id(layer)].get_weights())
    return converted


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
    )
    return model


def count_batch_norms(model):
    kinds = (keras.layers.BatchNormalization, keras_bn.BatchNormalization)
    return sum(isinstance(layer, kinds) for layer in model.layers)


def difference(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


# -- timing ------------------------------------------------------------------


def benchmark_network(name, args):
    stock = compiled(build(name, args.size))
    ours = compiled(with_keras_bn(stock))
    folded, fold_report = keras_bn.fold_batchnorm(ours, return_report=True)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(args.batch, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, CLASSES, size=(args.batch,))
    predictions = [m.predict_on_batch(x) for m in (stock, ours, folded)]

    train = harness.time_interleaved(
        {
            "keras": lambda: stock.train_on_batch(x, y),
            "keras_bn": lambda: ours.train_on_batch(x, y),
        },
        args.repeats,
    )
    predict = harness.time_interleaved(
        {
            "keras": lambda: stock.predict_on_batch(x),
            "keras_bn": lambda: ours.predict_on_batch(x),
            "keras_bn folded": lambda: folded.predict_on_batch(x),
        },
        args.repeats,
    )
    upstream = rng.normal(size=(args.batch, CLASSES)).astype("float32")
    peaks = {
        label: harness.peak_bytes_or_none(
            label, harness.module_steps(model, x, upstream).peak_bytes
        )
        for label, model in (("keras", stock), ("keras_bn", ours))
    }
    speedup = harness.paired_ratio(predict, "keras_bn", "keras_bn folded")
    return {
        "network": name,
        "input": [args.batch, args.size, args.size, 3],
        "parameters": int(stock.count_params()),
        "batch_normalizations": count_batch_norms(stock),
        "folded": len(fold_report.folded),
        "train_ms": harness.milliseconds(train),
        "predict_ms": harness.milliseconds(predict),
        "train_peak_bytes": peaks,
        "ratios": [
            harness.ratio_row(train, "keras_bn", "keras", TRAIN_TARGET, task="train"),
            harness.ratio_row(predict, "keras_bn", "keras", task="predict"),
        ],
        "fold_speedup": speedup,
        "fold_speedup_of_minima": harness.ratio_of_minima(
            predict, "keras_bn", "keras_bn folded"
        ),
        "fold_met": bool(speedup >= FOLD_TARGET) if fold_report.folded else None,
        "max_abs_difference": {
            "keras_bn vs keras": difference(predictions[1], predictions[0]),
            "folded vs unfolded": difference(predictions[2], predictions[1]),
        },
    }


def main(argv=None):
    args = parse_args(argv)
    harness.set_threads(args.threads)
    started = time.perf_counter()
    results = {"machine": harness.machine(), "repeats": args.repeats, "results": []}
    for name in args.networks:
        print(f"timing {name} ...", flush=True)
        results["results"].append(benchmark_network(name, args))
        keras.backend.clear_session()
    results["seconds"] = time.perf_counter() - started
    print()
    print(report.networks_markdown(results, TRAIN_TARGET, FOLD_TARGET))
    path = args.json or f"networks-{BACKEND}.json"
    report.write_json(results, path)
    print(f"\nwrote {path} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
