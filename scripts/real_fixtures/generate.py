# ruff: noqa: UP010, UP031, UP032, NPY002
# (Python 2.7 and 3.6 run this script: no f-strings, __future__ imports kept,
# NumPy 1.16's legacy RNG.)
"""Write legacy-loader fixtures with a real old Keras release.

Runs inside the old release's interpreter (Python 2.7 or 3.6, see README.md),
never in the Keras 3 environment. For one release and one backend it builds a
few small models with BatchNormalization, trains them a few SGD steps on
random inputs (non-zero mean, non-unit scale) so that the running statistics
move far from their start, and writes, per model, into OUT:

    <model>.weights.h5   save_weights (every release)
    <model>.model.h5     model.save (Keras 1.0.7 and later)
    <model>.json         to_json()  (where the release has it)
    <model>.yaml         to_yaml()  (where the release has it)
    <model>.npz          x: an input batch (float32), y: the release's own
                         model.predict(x) (test phase, whole batch at once)

plus manifest.json, which describes each model in a neutral form (see
README.md) that tests/real_fixtures.py rebuilds on Keras 3.

Usage: python generate.py --release 1.0.8 --backend theano --out DIR
Keras must be importable (PYTHONPATH); this script sets HOME, keras.json,
KERAS_BACKEND and THEANO_FLAGS itself before importing it.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shutil
import sys
import tempfile

N_TRAIN = 64
BATCH = 16
N_TEST = 8
N_OUT = 3
WORKAROUNDS = []  # what this run had to patch, recorded in the manifest


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--release", required=True, help="Keras version, e.g. 1.0.8, or tf-keras-2.21"
    )
    p.add_argument("--backend", required=True, choices=["theano", "tensorflow"])
    p.add_argument("--out", required=True)
    p.add_argument(
        "--steps",
        type=int,
        default=60,
        help="SGD steps per model (batches of %d)" % BATCH,
    )
    p.add_argument("--theano-compiledir", default=None)
    p.add_argument("--seed", type=int, default=1234)
    return p.parse_args()


def family_of(release):
    if release.startswith("tf-keras"):
        return 3
    return int(release.split(".")[0])


def setup_environment(args, family):
    """A private HOME (old Keras writes ~/.keras/keras.json on import, which
    Keras 3 also reads), the backend, and Theano's flags."""
    home = tempfile.mkdtemp(prefix="oldkeras-home-")
    os.environ["HOME"] = home
    os.makedirs(os.path.join(home, ".keras"))
    config = {"floatx": "float32", "epsilon": 1e-07, "backend": args.backend}
    if family == 1:
        config["image_dim_ordering"] = "th" if args.backend == "theano" else "tf"
    elif family >= 2:
        config["image_data_format"] = (
            "channels_first" if args.backend == "theano" else "channels_last"
        )
    with open(os.path.join(home, ".keras", "keras.json"), "w") as f:
        json.dump(config, f)
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    compiledir = args.theano_compiledir or os.path.join(home, "theano")
    flags = "device=cpu,floatX=float32,base_compiledir=" + compiledir
    extra = os.environ.get("THEANO_EXTRA_FLAGS")
    if extra:
        flags += "," + extra
    os.environ["THEANO_FLAGS"] = flags
    return home


# ---------------------------------------------------------------------------
# Neutral model specifications (also what manifest.json records).


def bn(mode=0, epsilon=None, axis=-1, momentum=None):
    # epsilon/momentum None: the release's default (filled in after building
    # from the layer object itself).
    return {
        "type": "batch_norm",
        "mode": mode,
        "epsilon": epsilon,
        "axis": axis,
        "momentum": momentum,
    }


def dense(units, activation="linear"):
    return {"type": "dense", "units": units, "activation": activation, "use_bias": True}


def act(name):
    return {"type": "activation", "activation": name}


def conv2d(filters, data_format):
    return {
        "type": "conv2d",
        "filters": filters,
        "kernel_size": [3, 3],
        "padding": "valid",
        "strides": [1, 1],
        "data_format": data_format,
        "activation": "linear",
    }


def conv1d(filters):
    return {
        "type": "conv1d",
        "filters": filters,
        "kernel_size": 3,
        "padding": "valid",
        "strides": 1,
        "activation": "linear",
    }


def max_pool2d(data_format):
    return {
        "type": "max_pool2d",
        "pool_size": [2, 2],
        "strides": [2, 2],
        "padding": "valid",
        "data_format": data_format,
    }


def flatten():
    return {"type": "flatten", "data_format": None}


def release_semantics(release, backend, keras):
    """What the release's own code computes (read from its source; see
    README.md for the file:function of each), recorded in manifest.json and
    checked against the release's predictions by verify.py."""
    family = family_of(release)
    v = tuple(int(p) for p in release.replace("tf-keras-", "").split(".")[:3])
    # A layer made with no arguments holds the defaults (Keras 2 wraps
    # __init__ in a decorator, hiding them from inspect).
    default_layer = layers_module(keras, family).BatchNormalization()
    defaults = {
        "epsilon": float(default_layer.epsilon),
        "momentum": float(default_layer.momentum),
    }
    if family >= 2:
        fourth, denominator = "variance", "sqrt(variance + epsilon)"
    elif v < (1, 0, 6) or (v == (1, 0, 6) and backend == "theano"):
        fourth, denominator = "std", "std + epsilon"
    elif v == (1, 0, 7) and backend == "theano":
        fourth, denominator = "variance", "sqrt(variance) + epsilon"
    else:
        fourth, denominator = "variance", "sqrt(variance + epsilon)"
    if family == 0:
        sample_std = "sqrt(var)"
    elif family == 1:
        sample_std = "sqrt(var + epsilon)"
    else:
        sample_std = None
    return {
        "fourth_array": fourth,
        "mode0_inference": "gamma * (x - running_mean) / d + beta",
        "mode0_denominator_d": denominator,
        "mode1_inference": (
            None
            if sample_std is None
            else "gamma * (x - m) / (s + epsilon) + beta, m and "
            "var over each sample's last axis"
        ),
        "mode1_sample_std_s": sample_std,
        "default_epsilon": defaults.get("epsilon"),
        "default_momentum": defaults.get("momentum"),
        "conv_kernels_flipped": backend == "theano",
    }


# Models a release family does not write, and why.
SKIPPED = {
    0: [
        "dense_mode2: Keras 0.x has no mode 2",
        "functional: Keras 0.x has the Graph container instead (model 'graph')",
    ],
    2: ["dense_mode1, dense_mode2: Keras 2 removed BatchNormalization modes"],
    3: [
        "dense_mode1, dense_mode2: Keras 2 removed BatchNormalization modes",
        "conv2d_cf: TensorFlow 2 on CPU has no channels_first (NCHW) "
        "convolution or pooling kernels",
    ],
}


def model_specs(release, backend, family):
    """The models this release can build."""
    per_activation = release.startswith("0.2")  # 0.2.0: BN over the full sample
    specs = []

    def axis(a):
        return None if per_activation else a

    specs.append(
        {
            "name": "dense",
            "kind": "sequential",
            "input_shape": [6],
            "description": "Dense -> BN (mode 0, default epsilon) -> relu -> "
            "Dense -> BN (mode 0, default epsilon)",
            "layers": [
                dense(8),
                bn(axis=axis(-1)),
                act("relu"),
                dense(N_OUT),
                bn(axis=axis(-1)),
            ],
        }
    )
    specs.append(
        {
            "name": "dense_eps",
            "kind": "sequential",
            "input_shape": [6],
            "description": "as dense, both BN with epsilon=0.01",
            "layers": [
                dense(8),
                bn(epsilon=0.01, axis=axis(-1)),
                act("relu"),
                dense(N_OUT),
                bn(epsilon=0.01, axis=axis(-1)),
            ],
        }
    )
    if family <= 1:
        specs.append(
            {
                "name": "dense_mode1",
                "kind": "sequential",
                "input_shape": [6],
                "description": "Dense -> BN (mode 1, samplewise, epsilon=0.1: "
                "large enough to tell where it enters) -> tanh "
                "-> Dense",
                "layers": [
                    dense(8),
                    bn(mode=1, epsilon=0.1, axis=axis(-1)),
                    act("tanh"),
                    dense(N_OUT),
                ],
            }
        )
    if family == 1:
        specs.append(
            {
                "name": "dense_mode2",
                "kind": "sequential",
                "input_shape": [6],
                "description": "Dense -> BN (mode 2: batch statistics also at "
                "test time) -> relu -> Dense",
                "layers": [dense(8), bn(mode=2, axis=-1), act("relu"), dense(N_OUT)],
            }
        )
    # Convolutions. 0.2.0 knows channels-first only (Theano).
    formats = ["channels_first"]
    if not per_activation:
        formats.append("channels_last")
    if family == 3:
        # TensorFlow 2 on CPU has no NCHW convolution or pooling kernels.
        formats.remove("channels_first")
    for fmt in formats:
        shape = [2, 8, 8] if fmt == "channels_first" else [8, 8, 2]
        specs.append(
            {
                "name": "conv2d_" + ("cf" if fmt == "channels_first" else "cl"),
                "kind": "sequential",
                "input_shape": shape,
                "description": "Conv2D(4, 3x3) -> BN over the channels -> relu "
                "-> MaxPool 2x2 -> Flatten -> Dense (%s)" % fmt,
                "layers": [
                    conv2d(4, fmt),
                    bn(axis=axis(1 if fmt == "channels_first" else -1)),
                    act("relu"),
                    max_pool2d(fmt),
                    flatten(),
                    dense(N_OUT),
                ],
            }
        )
    specs.append(
        {
            "name": "conv1d",
            "kind": "sequential",
            "input_shape": [10, 3],
            "description": "Conv1D(4, 3) -> BN over the channels -> relu -> "
            "Flatten -> Dense",
            "layers": [
                conv1d(4),
                bn(axis=axis(-1)),
                act("relu"),
                flatten(),
                dense(N_OUT),
            ],
        }
    )
    specs.append(
        {
            "name": "graph" if family == 0 else "functional",
            "kind": "graph" if family == 0 else "functional",
            "description": "two branches from one input, each Dense -> BN, "
            "concatenated, then Dense",
            "graph": {
                "inputs": {"x": [6]},
                "nodes": [
                    {"name": "a", "layer": dense(5), "inputs": ["x"]},
                    {"name": "a_bn", "layer": bn(axis=axis(-1)), "inputs": ["a"]},
                    {"name": "a_act", "layer": act("relu"), "inputs": ["a_bn"]},
                    {"name": "b", "layer": dense(4), "inputs": ["x"]},
                    {
                        "name": "b_bn",
                        "layer": bn(epsilon=0.01, axis=axis(-1)),
                        "inputs": ["b"],
                    },
                    {
                        "name": "cat",
                        "layer": {"type": "concatenate", "axis": -1},
                        "inputs": ["a_act", "b_bn"],
                    },
                    {"name": "out", "layer": dense(N_OUT), "inputs": ["cat"]},
                ],
                "outputs": ["out"],
            },
        }
    )
    return specs


# ---------------------------------------------------------------------------
# Building the specs with the old release's API.


def layers_module(keras, family):
    """keras.layers; Keras 0.x does not import its layer modules itself."""
    import importlib

    if family != 0:
        return keras.layers
    ns = argparse.Namespace()
    for sub in ("core", "normalization", "convolutional"):
        mod = importlib.import_module(keras.__name__ + ".layers." + sub)
        for k, v in vars(mod).items():
            if not k.startswith("_"):
                setattr(ns, k, v)
    return ns


def th_ordering(fmt):
    return "th" if fmt == "channels_first" else "tf"


def make_layer(keras, family, release, spec, input_shape=None, name=None):
    L = layers_module(keras, family)
    kw = {}
    if input_shape is not None:
        kw["input_shape"] = tuple(input_shape)
    if name is not None and family >= 1:
        kw["name"] = name
    t = spec["type"]
    if t == "dense":
        if family >= 2:
            return L.Dense(
                spec["units"],
                activation=spec["activation"],
                use_bias=spec["use_bias"],
                **kw
            )
        return L.Dense(spec["units"], activation=spec["activation"], **kw)
    if t == "activation":
        return L.Activation(spec["activation"], **kw)
    if t == "flatten":
        return L.Flatten(**kw)
    if t == "batch_norm":
        if spec["epsilon"] is not None:
            kw["epsilon"] = spec["epsilon"]
        if spec["momentum"] is not None:
            kw["momentum"] = spec["momentum"]
        if family <= 1:
            kw["mode"] = spec["mode"]
        if spec["axis"] is not None:
            kw["axis"] = spec["axis"]
        return L.BatchNormalization(**kw)
    if t == "conv2d":
        k = spec["kernel_size"]
        if family >= 2:
            return L.Conv2D(
                spec["filters"],
                tuple(k),
                strides=tuple(spec["strides"]),
                padding=spec["padding"],
                data_format=spec["data_format"],
                activation=spec["activation"],
                **kw
            )
        if release.startswith("0.2"):
            assert spec["data_format"] == "channels_first"
        else:
            kw["dim_ordering"] = th_ordering(spec["data_format"])
        return L.Convolution2D(
            spec["filters"],
            k[0],
            k[1],
            border_mode=spec["padding"],
            subsample=tuple(spec["strides"]),
            activation=spec["activation"],
            **kw
        )
    if t == "conv1d":
        if family >= 2:
            return L.Conv1D(
                spec["filters"],
                spec["kernel_size"],
                strides=spec["strides"],
                padding=spec["padding"],
                activation=spec["activation"],
                **kw
            )
        return L.Convolution1D(
            spec["filters"],
            spec["kernel_size"],
            border_mode=spec["padding"],
            subsample_length=spec["strides"],
            activation=spec["activation"],
            **kw
        )
    if t == "max_pool2d":
        if family >= 2:
            return L.MaxPooling2D(
                tuple(spec["pool_size"]),
                strides=tuple(spec["strides"]),
                padding=spec["padding"],
                data_format=spec["data_format"],
                **kw
            )
        if release.startswith("0.2"):
            return L.MaxPooling2D(
                pool_size=tuple(spec["pool_size"]),
                stride=tuple(spec["strides"]),
                ignore_border=True,
                **kw
            )
        return L.MaxPooling2D(
            pool_size=tuple(spec["pool_size"]),
            strides=tuple(spec["strides"]),
            border_mode=spec["padding"],
            dim_ordering=th_ordering(spec["data_format"]),
            **kw
        )
    raise ValueError("unknown layer type " + t)


def models_module(keras):
    """keras.models of the package in hand (also tf_keras)."""
    import importlib

    return importlib.import_module(keras.__name__ + ".models")


def build_sequential(keras, family, release, spec):
    model = models_module(keras).Sequential()
    layers = []
    for i, ls in enumerate(spec["layers"]):
        layer = make_layer(
            keras,
            family,
            release,
            ls,
            input_shape=spec["input_shape"] if i == 0 else None,
        )
        model.add(layer)
        layers.append(layer)
    return model, layers


def build_graph0(keras, release, spec):
    """Keras 0.x Graph container: a concatenate node is an identity layer
    whose inputs are merged with merge_mode='concat'."""
    g = spec["graph"]
    model = models_module(keras).Graph()
    for name, shape in sorted(g["inputs"].items()):
        model.add_input(name=name, input_shape=tuple(shape))
    layers = []
    for node in g["nodes"]:
        ls = node["layer"]
        if ls["type"] == "concatenate":
            layer = layers_module(keras, 0).Activation("linear")
            model.add_node(
                layer,
                name=node["name"],
                inputs=node["inputs"],
                merge_mode="concat",
                concat_axis=ls["axis"],
            )
        else:
            layer = make_layer(keras, 0, release, ls)
            model.add_node(layer, name=node["name"], input=node["inputs"][0])
        layers.append(layer)
    for out in g["outputs"]:
        model.add_output(name=out + "_output", input=out)
    return model, layers


def build_functional(keras, family, release, spec):
    g = spec["graph"]
    tensors = {}
    inputs = []
    for name, shape in sorted(g["inputs"].items()):
        t = keras.layers.Input(shape=tuple(shape), name=name)
        tensors[name] = t
        inputs.append(t)
    layers = []
    for node in g["nodes"]:
        ls = node["layer"]
        ins = [tensors[i] for i in node["inputs"]]
        if ls["type"] == "concatenate":
            if family == 1:
                from keras.layers import merge

                layer = None
                out = merge(
                    ins, mode="concat", concat_axis=ls["axis"], name=node["name"]
                )
            else:
                layer = keras.layers.Concatenate(axis=ls["axis"], name=node["name"])
                out = layer(ins)
        else:
            layer = make_layer(keras, family, release, ls, name=node["name"])
            out = layer(ins[0])
        tensors[node["name"]] = out
        layers.append(layer)
    outputs = [tensors[o] for o in g["outputs"]]
    if family == 1:
        model = models_module(keras).Model(input=inputs[0], output=outputs[0])
    else:
        model = models_module(keras).Model(inputs=inputs[0], outputs=outputs[0])
    return model, layers


# ---------------------------------------------------------------------------


def to_native(obj):
    """JSON-able: numpy scalars and bytes to Python values."""
    import numpy as np

    if isinstance(obj, dict):
        return dict((str(k), to_native(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return [to_native(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.decode("utf8")
    if isinstance(obj, np.ndarray):
        return to_native(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def describe_weights_file(path):
    """What a weights file holds, in order: [{"group", "weights": [[name,
    shape]]}] plus the root attributes."""
    import h5py

    out = {"attrs": {}, "groups": []}
    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            if k in ("layer_names", "nb_layers", "keras_version", "backend"):
                out["attrs"][k] = to_native(v)
        if "model_weights" in f:
            f = f["model_weights"]
        if "nb_layers" in f.attrs:  # 0.x Sequential
            for k in range(int(f.attrs["nb_layers"])):
                g = f["layer_%d" % k]
                n = int(g.attrs["nb_params"])
                out["groups"].append(
                    {
                        "group": "layer_%d" % k,
                        "weights": [
                            ["param_%d" % i, list(g["param_%d" % i].shape)]
                            for i in range(n)
                        ],
                    }
                )
        elif "graph" in f:  # 0.x Graph
            g = f["graph"]
            n = int(g.attrs["nb_params"])
            out["groups"].append(
                {
                    "group": "graph",
                    "weights": [
                        ["param_%d" % i, list(g["param_%d" % i].shape)]
                        for i in range(n)
                    ],
                }
            )
        else:
            for name in f.attrs["layer_names"]:
                name = to_native(name)
                g = f[name]
                wn = [to_native(w) for w in g.attrs["weight_names"]]
                out["groups"].append(
                    {"group": name, "weights": [[w, list(g[w].shape)] for w in wn]}
                )
    return out


def import_keras(args, family):
    """The release's keras package (tf_keras for family 3), seeded, with the
    patches an old release needs on the TensorFlow that PyPI still has
    (recorded in WORKAROUNDS)."""
    if args.backend == "theano" and family >= 1:
        import theano.ifelse  # noqa: F401  (Keras 1.2.2/2.0.8 on Theano 1.0.5)

        WORKAROUNDS.append("import theano.ifelse before keras")
    if family == 3:
        import tensorflow as tf

        tf.random.set_seed(args.seed)
        import tf_keras as keras
    else:
        if args.backend == "tensorflow":
            import tensorflow as tf

            if hasattr(tf, "set_random_seed"):
                tf.set_random_seed(args.seed)
            tf_python = getattr(tf, "python", None)
            if tf_python is not None and not hasattr(tf_python, "control_flow_ops"):
                # Keras 1.0.6 calls tf.python.control_flow_ops.cond, which
                # TensorFlow 0.12 (the oldest on PyPI) moved to
                # tf.python.ops.control_flow_ops: the usual 2016 shim.
                from tensorflow.python.ops import control_flow_ops

                tf_python.control_flow_ops = control_flow_ops
                WORKAROUNDS.append(
                    "tf.python.control_flow_ops = "
                    "tensorflow.python.ops.control_flow_ops (Keras 1.0.x on "
                    "TensorFlow 0.12)"
                )
        import keras

        if args.backend == "tensorflow" and args.release in ("1.0.7", "1.0.8"):
            # Keras 1.0.7/1.0.8 call assign_moving_average, which from
            # TensorFlow 0.11 creates zero-debiasing variables these Keras
            # releases never initialize ("uninitialized value
            # .../local_step"); TensorFlow 0.10 (not on PyPI) had no
            # debiasing, which zero_debias=False restores.
            import functools

            from tensorflow.python.training import moving_averages

            tfb = sys.modules["keras.backend.tensorflow_backend"]
            tfb.moving_averages = argparse.Namespace(
                assign_moving_average=functools.partial(
                    moving_averages.assign_moving_average, zero_debias=False
                )
            )
            WORKAROUNDS.append(
                "assign_moving_average(..., zero_debias=False), as in "
                "TensorFlow 0.10 (Keras 1.0.7/1.0.8 on TensorFlow 0.12)"
            )
    return keras


def save_model_files(model, out_dir, name, family, x, y):
    """Writes <name>.weights.h5, .model.h5, .json, .yaml (where the release
    has them) and .npz (x, y); returns {kind: file name}."""
    import numpy as np

    files = {}
    path = os.path.join(out_dir, name + ".weights.h5")
    if family == 3:
        # tf-keras writes its new (Keras-3-like) format to names ending in
        # ".weights.h5"; any other ".h5" name gets the legacy layout.
        model.save_weights(path[: -len(".weights.h5")] + ".legacy.h5", overwrite=True)
        os.rename(path[: -len(".weights.h5")] + ".legacy.h5", path)
        if "save_weights" not in " ".join(WORKAROUNDS):
            WORKAROUNDS.append(
                "save_weights to <model>.legacy.h5 (the legacy HDF5 "
                "layout), renamed <model>.weights.h5"
            )
    else:
        model.save_weights(path, overwrite=True)
    files["weights"] = name + ".weights.h5"
    if hasattr(model, "save"):
        path = os.path.join(out_dir, name + ".model.h5")
        model.save(path)
        files["model"] = name + ".model.h5"
    for fmt in ("json", "yaml"):
        try:
            text = getattr(model, "to_" + fmt)()
        except Exception as e:  # e.g. tf-keras: to_yaml was removed
            print("  no to_%s: %s" % (fmt, e))
            continue
        with open(os.path.join(out_dir, name + "." + fmt), "w") as f:
            f.write(text)
        files[fmt] = name + "." + fmt
    np.savez(os.path.join(out_dir, name + ".npz"), x=x, y=y)
    files["npz"] = name + ".npz"
    return files


def main():
    args = parse_args()
    family = family_of(args.release)
    home = setup_environment(args, family)
    import numpy as np

    np.random.seed(args.seed)
    keras = import_keras(args, family)
    out_dir = os.path.abspath(args.out)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)

    versions = {"python": "%d.%d.%d" % sys.version_info[:3], "numpy": np.__version__}
    try:
        import h5py

        versions["h5py"] = h5py.__version__
    except ImportError:
        pass
    if args.backend == "theano":
        import theano

        versions["theano"] = theano.__version__
        versions["theano_flags"] = ",".join(
            f
            for f in os.environ["THEANO_FLAGS"].split(",")
            if not f.startswith("base_compiledir=")
        )
    else:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    kv = getattr(keras, "__version__", None)
    if kv is not None and family <= 2:
        assert kv == args.release, (kv, args.release)

    manifest = {
        "release": args.release,
        "keras_version": kv,
        "backend": args.backend,
        "versions": versions,
        "generator": "scripts/real_fixtures/generate.py",
        "train": {
            "optimizer": "sgd (release default learning rate)",
            "loss": "mse",
            "steps": args.steps,
            "batch_size": BATCH,
            "x": "standard normal * 3 + 2",
            "seed": args.seed,
        },
        "models": [],
        "skipped": SKIPPED.get(family, []),
        "batch_norm": release_semantics(args.release, args.backend, keras),
        "workarounds": WORKAROUNDS,
    }

    rng = np.random.RandomState(args.seed)
    for spec in model_specs(args.release, args.backend, family):
        name = spec["name"]
        print("==", args.release, args.backend, name)
        sys.stdout.flush()
        if spec["kind"] == "sequential":
            model, layers = build_sequential(keras, family, args.release, spec)
            layer_specs = spec["layers"]
            in_shape = spec["input_shape"]
        elif spec["kind"] == "graph":
            model, layers = build_graph0(keras, args.release, spec)
            layer_specs = [n["layer"] for n in spec["graph"]["nodes"]]
            in_shape = spec["graph"]["inputs"]["x"]
        else:
            model, layers = build_functional(keras, family, args.release, spec)
            layer_specs = [n["layer"] for n in spec["graph"]["nodes"]]
            in_shape = spec["graph"]["inputs"]["x"]
        # The release's own defaults, read back from the layers.
        for layer, ls in zip(layers, layer_specs):
            if ls["type"] == "batch_norm":
                ls["epsilon"] = float(layer.epsilon)
                ls["momentum"] = float(layer.momentum)
                if ls["mode"] == 1:
                    ls["samplewise_std"] = (
                        "sqrt(var)" if family == 0 else "sqrt(var + epsilon)"
                    )
            if ls["type"] == "flatten" and hasattr(layer, "data_format"):
                ls["data_format"] = layer.data_format
        if spec["kind"] == "graph":
            model.compile(optimizer="sgd", loss={"out_output": "mse"})
        else:
            model.compile(optimizer="sgd", loss="mse")
        x_train = (rng.randn(N_TRAIN, *in_shape) * 3 + 2).astype("float32")
        y_train = rng.randn(N_TRAIN, N_OUT).astype("float32")
        for step in range(args.steps):
            i = (step * BATCH) % N_TRAIN
            xb, yb = x_train[i : i + BATCH], y_train[i : i + BATCH]
            if spec["kind"] == "graph":
                model.train_on_batch({"x": xb, "out_output": yb})
            else:
                model.train_on_batch(xb, yb)
        x = (rng.randn(N_TEST, *in_shape) * 3 + 2).astype("float32")
        if spec["kind"] == "graph":
            y = model.predict({"x": x}, batch_size=N_TEST, verbose=0)
            y = y["out_output"]
        else:
            y = model.predict(x, batch_size=N_TEST, verbose=0)
        y = np.asarray(y, dtype="float32")
        assert np.all(np.isfinite(y)), name

        files = save_model_files(model, out_dir, name, family, x, y)

        entry = {
            "name": name,
            "kind": spec["kind"],
            "description": spec["description"],
            "files": files,
            "predict_batch_size": N_TEST,
        }
        if spec["kind"] == "sequential":
            entry["input_shape"] = spec["input_shape"]
            entry["layers"] = spec["layers"]
        else:
            entry["graph"] = spec["graph"]
            if spec["kind"] == "graph":
                entry["graph"]["output_names"] = {
                    o + "_output": o for o in spec["graph"]["outputs"]
                }
        entry["stored"] = describe_weights_file(os.path.join(out_dir, files["weights"]))
        manifest["models"].append(entry)

    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(to_native(manifest), f, indent=1, sort_keys=True)
        f.write("\n")
    shutil.rmtree(home, ignore_errors=True)
    print("wrote", out_dir)


if __name__ == "__main__":
    main()
