"""Train the digits network data-parallel on N virtual CPU devices and show,
side by side, the per-device and global batch statistics of its first
BatchNormalization layer, and the statistics the layer actually used.

    KERAS_BACKEND=jax python scripts/distributed_demo.py --devices 8
    KERAS_BACKEND=tensorflow python scripts/distributed_demo.py --devices 4
    KERAS_BACKEND=tensorflow python scripts/distributed_demo.py --unsynchronized

JAX uses keras.distribution.DataParallel; TensorFlow uses
tf.distribute.MirroredStrategy with synchronized=True (or False). The virtual
devices stand in for GPUs or hosts: the same code runs on real ones.
"""

import argparse
import os

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--devices", type=int, default=4, help="virtual CPU devices")
parser.add_argument("--steps", type=int, default=40, help="training steps")
parser.add_argument("--batch-size", type=int, default=64, help="global batch")
parser.add_argument(
    "--unsynchronized",
    action="store_true",
    help="TensorFlow: per-replica statistics (synchronized=False)",
)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if backend == "jax":
    # Must be set before JAX starts.
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
elif backend == "tensorflow":
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * args.devices,
    )
else:
    raise SystemExit("Keras distributes training on the JAX and TensorFlow backends.")

import figure1  # noqa: E402  (this script's own folder is on sys.path)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_bn import BatchNormalization  # noqa: E402

if args.steps < 1:
    raise SystemExit("--steps must be at least 1")
if args.batch_size % args.devices:
    raise SystemExit("--batch-size must be a multiple of --devices")
synchronized = backend == "tensorflow" and not args.unsynchronized
split = figure1.load_split(seed=args.seed)
x_train, y_train = split.x_train, split.y_train
# Whole global batches only (each splits evenly over the devices), cycled in
# order until there are --steps of them: one epoch of exactly that many steps.
steps_per_pass = len(x_train) // args.batch_size
x_train = x_train[: steps_per_pass * args.batch_size]
y_train = y_train[: steps_per_pass * args.batch_size]
cycled = np.arange(args.steps * args.batch_size) % len(x_train)
keras.utils.set_random_seed(args.seed)


def build():
    def batch_norm():
        return BatchNormalization(synchronized=synchronized)

    model = figure1.build_model(batch_norm, seed=args.seed)
    model.compile(
        keras.optimizers.SGD(figure1.LEARNING_RATE), "sparse_categorical_crossentropy"
    )
    return model


if backend == "jax":
    devices = keras.distribution.list_devices("cpu")
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    model = build()
    how = f"keras.distribution.DataParallel over {len(devices)} devices"
else:
    strategy = tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(args.devices)]
    )
    with strategy.scope():
        model = build()
    how = (
        f"tf.distribute.MirroredStrategy over {args.devices} devices, "
        f"synchronized={synchronized}"
    )

print(f"Training {args.steps} steps, global batch {args.batch_size}: {how}")
model.fit(
    x_train[cycled],
    y_train[cycled],
    batch_size=args.batch_size,
    epochs=1,
    shuffle=False,
    verbose=2,
)

# What the layer is about to see in one more step on a known batch: the
# model's output up to it, with the weights of that step's forward pass.
layer = next(lay for lay in model.layers if isinstance(lay, BatchNormalization))
batch = slice(0, args.batch_size)
probe = keras.Model(model.inputs, layer.input)
layer_input = np.asarray(probe.predict(x_train[batch], verbose=0), "float64")
# The step's change in the running estimates reveals the batch statistics
# that the layer used.
before = [w.copy() for w in layer.get_weights()[-2:]]
# fit, not train_on_batch: under tf.distribute only fit splits the batch.
model.fit(x_train[batch], y_train[batch], batch_size=args.batch_size, verbose=0)
after = layer.get_weights()[-2:]
used_mean, used_std = (
    (new - layer.momentum * old) / (1 - layer.momentum)
    for old, new in zip(before, after)
)
shards = np.split(layer_input, args.devices)
eps = layer.epsilon
rows = []
for feature in range(5):
    per_device = [shard[:, feature].mean() for shard in shards]
    per_device_std = [np.sqrt(shard[:, feature].var() + eps) for shard in shards]
    rows.append(
        (
            feature,
            per_device,
            layer_input[:, feature].mean(),
            used_mean[feature],
            per_device_std,
            np.sqrt(layer_input[:, feature].var() + eps),
            used_std[feature],
        )
    )

shown = min(args.devices, 4)
header = " | ".join(f"dev {i}" for i in range(shown))
print(
    f"\nBatch mean of the first BatchNormalization's inputs "
    f"(first {shown} of {args.devices} devices):"
)
print(f"| feature | {header} | global | used by the layer |")
print("|---" * (shown + 3) + "|")
for feature, means, global_mean, used, *_ in rows:
    cells = " | ".join(f"{m:+.4f}" for m in means[:shown])
    print(f"| {feature} | {cells} | {global_mean:+.4f} | {used:+.4f} |")
print("\nBatch std (sqrt(var + epsilon)):")
print(f"| feature | {header} | global | used by the layer |")
print("|---" * (shown + 3) + "|")
for feature, *_, stds, global_std, used in rows:
    cells = " | ".join(f"{s:.4f}" for s in stds[:shown])
    print(f"| {feature} | {cells} | {global_std:.4f} | {used:.4f} |")
if backend == "tensorflow" and not synchronized:
    print(
        "\nsynchronized=False: each replica normalized with its own column; "
        "the last column is the average of theirs, which the running "
        "estimates moved by."
    )
mean_gap = max(abs(r[2] - r[3]) for r in rows)
std_gap = max(abs(r[5] - r[6]) for r in rows)
print(
    f"\nlargest gap between the global statistics and those the layer used: "
    f"mean {mean_gap:.2e}, std {std_gap:.2e}"
)
