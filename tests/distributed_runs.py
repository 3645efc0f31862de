"""Training runs on several virtual devices, each in a process of its own
(device counts are fixed when a backend starts). Prints one JSON line.

    python tests/distributed_runs.py jax data_parallel|model_parallel[_renorm]
    python tests/distributed_runs.py tensorflow synchronized|unsynchronized[_renorm]

A ``_renorm`` suffix builds the layer with Batch Renormalization.
"""

import json
import os
import sys

DEVICES = 8 if sys.argv[1] == "jax" else 4
GLOBAL_BATCH = 32


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * GLOBAL_BATCH, 6)).astype("float32")
    # One device's share of each batch is shifted, so per-device statistics
    # differ from the global ones.
    x[: GLOBAL_BATCH // DEVICES] += 4.0
    x[GLOBAL_BATCH : GLOBAL_BATCH + GLOBAL_BATCH // DEVICES] += 4.0
    y = rng.normal(size=(2 * GLOBAL_BATCH, 1)).astype("float32")
    return x, y


def build(synchronized=False, renorm=False):
    import keras

    import keras_bn

    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, use_bias=False, kernel_initializer="glorot_normal"),
            keras_bn.BatchNormalization(
                momentum=0.5,
                synchronized=synchronized,
                renorm=renorm,
                renorm_clipping={"rmax": 1.5, "dmax": 0.5} if renorm else None,
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def result(single, distributed):
    return {
        "single": [w.tolist() for w in single.get_weights()],
        "distributed": [w.tolist() for w in distributed.get_weights()],
        "bn_single": [w.tolist() for w in single.layers[1].get_weights()],
        "bn_distributed": [w.tolist() for w in distributed.layers[1].get_weights()],
    }


def run_jax(layout):
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES}"
    import keras

    layout, renorm = layout.removesuffix("_renorm"), layout.endswith("_renorm")
    x, y = data()
    keras.utils.set_random_seed(1)
    single = build(renorm=renorm)
    initial = single.get_weights()
    single.fit(x, y, batch_size=GLOBAL_BATCH, epochs=2, shuffle=False, verbose=0)

    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == DEVICES, devices
    if layout == "data_parallel":
        distribution = keras.distribution.DataParallel(devices=devices)
    else:
        mesh = keras.distribution.DeviceMesh((DEVICES,), ["batch"], devices)
        distribution = keras.distribution.ModelParallel(
            layout_map=keras.distribution.LayoutMap(mesh), batch_dim_name="batch"
        )
    keras.distribution.set_distribution(distribution)
    distributed = build(renorm=renorm)
    distributed.set_weights(initial)
    distributed.fit(x, y, batch_size=GLOBAL_BATCH, epochs=2, shuffle=False, verbose=0)
    return result(single, distributed)


def run_tensorflow(mode):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES
    )
    import keras

    mode, renorm = mode.removesuffix("_renorm"), mode.endswith("_renorm")
    x, y = data()
    keras.utils.set_random_seed(1)
    single = build(renorm=renorm)
    initial = single.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    single.fit(dataset, epochs=2, verbose=0)

    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(DEVICES)])
    with strategy.scope():
        distributed = build(synchronized=mode == "synchronized", renorm=renorm)
    distributed.set_weights(initial)
    distributed.fit(dataset, epochs=2, verbose=0)
    return result(single, distributed)


if __name__ == "__main__":
    backend, how = sys.argv[1], sys.argv[2]
    os.environ["KERAS_BACKEND"] = backend
    run = run_jax if backend == "jax" else run_tensorflow
    print("RESULT " + json.dumps(run(how)))
