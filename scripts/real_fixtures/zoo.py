# ruff: noqa: UP010, UP031, UP032, NPY002
# (Python 2.7 and 3.6 run this script: no f-strings, __future__ imports kept,
# NumPy 1.16's legacy RNG.)
"""Write one small model per layer family with a real old Keras release.

Runs inside the old release's interpreter, like generate.py (whose
environment set-up, imports and file writing it shares). Each model is a
Sequential: BatchNormalization first (so that every model carries one, its
running statistics moved by training), then the layer under test, and
where that layer's output is not what the next layer takes, the fewest
layers that make it so. Per model, into OUT: <model>.weights.h5,
<model>.model.h5, <model>.json, <model>.yaml (where the release has them)
and <model>.npz (x, and y: the release's own predict(x)); manifest.json
lists the models, what each holds and which families this release cannot
build (with the release's own error).

Usage: python zoo.py --release 1.2.2 --backend theano --out DIR
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generate  # noqa: E402

N_TRAIN = 32
BATCH = 8
N_TEST = 6
STEPS = 12


# ---------------------------------------------------------------------------
# The families. Each builder gets (L, k, cf): keras.layers, the Keras major
# version (1, 2, or 3 for tf-keras) and whether images are channels-first
# (the release's default on Theano); it returns (input shape, [layers]) or
# raises Unavailable. The first layer gets the input shape; BatchNormalization
# is put in front by build().


class Unavailable(Exception):
    pass


def need(k, lowest, why):
    if k < lowest:
        raise Unavailable(why)


def image(cf, channels, *spatial):
    return [channels] + list(spatial) if cf else list(spatial) + [channels]


def conv2d_rect(L, k, cf):
    """Non-square kernel, strides, filters != channels: rows and cols must
    not be swapped."""
    if k == 1:
        layer = L.Convolution2D(5, 3, 2, subsample=(2, 1), border_mode="valid")
    else:
        layer = L.Conv2D(5, (3, 2), strides=(2, 1), padding="valid")
    return image(cf, 3, 9, 7), [layer]


def atrous2d(L, k, cf):
    if k == 1:
        layer = L.AtrousConvolution2D(3, 3, 2, atrous_rate=(2, 2))
    else:
        layer = L.Conv2D(3, (3, 2), dilation_rate=(2, 2))
    return image(cf, 2, 9, 7), [layer]


def conv3d(L, k, cf):
    if k == 1:
        layer = L.Convolution3D(3, 2, 3, 2)
    else:
        layer = L.Conv3D(3, (2, 3, 2))
    return image(cf, 2, 5, 6, 4), [layer]


def separable2d(L, k, cf):
    if k == 1:
        layer = L.SeparableConvolution2D(7, 3, 2, depth_multiplier=2)
    else:
        layer = L.SeparableConv2D(7, (3, 2), depth_multiplier=2)
    return image(cf, 3, 8, 7), [layer]


def separable1d(L, k, cf):
    need(k, 2, "SeparableConv1D is Keras 2.1.3's")
    return [9, 3], [L.SeparableConv1D(7, 3, depth_multiplier=2)]


def depthwise2d(L, k, cf):
    need(k, 2, "DepthwiseConv2D is Keras 2.1.5's")
    return image(cf, 3, 8, 7), [L.DepthwiseConv2D((3, 2), depth_multiplier=2)]


def deconv2d(L, k, cf):
    if k == 1:
        shape = (None, 4, 15, 8) if cf else (None, 15, 8, 4)
        layer = L.Deconvolution2D(
            4, 3, 2, output_shape=shape, subsample=(2, 1), border_mode="valid"
        )
    else:
        layer = L.Conv2DTranspose(4, (3, 2), strides=(2, 1), padding="valid")
    return image(cf, 3, 7, 7), [layer]


def deconv3d(L, k, cf):
    need(k, 2, "Conv3DTranspose is Keras 2's")
    return image(cf, 2, 4, 5, 3), [L.Conv3DTranspose(3, (2, 3, 2), strides=(1, 2, 1))]


def upsampling(L, k, cf):
    if k == 1:
        ups = [L.UpSampling1D(length=2)]
    else:
        ups = [L.UpSampling1D(size=2)]
    return [5, 3], ups


def upsampling2d(L, k, cf):
    return image(cf, 2, 3, 4), [L.UpSampling2D(size=(2, 3))]


def upsampling3d(L, k, cf):
    return image(cf, 2, 3, 2, 2), [L.UpSampling3D(size=(2, 1, 3))]


def cropping(L, k, cf):
    return [7, 3], [L.Cropping1D(cropping=(1, 2))]


def cropping2d(L, k, cf):
    return image(cf, 2, 7, 6), [L.Cropping2D(cropping=((1, 2), (0, 3)))]


def cropping3d(L, k, cf):
    return image(cf, 2, 5, 4, 6), [L.Cropping3D(cropping=((1, 0), (0, 1), (2, 1)))]


def zeropadding(L, k, cf):
    return [5, 3], [L.ZeroPadding1D(padding=2)]


def zeropadding2d(L, k, cf):
    if k == 1:
        # Keras 1.2's four-number form: (top, bottom, left, right).
        layer = L.ZeroPadding2D(padding=(1, 2, 0, 3))
    else:
        layer = L.ZeroPadding2D(padding=((1, 2), (0, 3)))
    return image(cf, 2, 4, 3), [layer]


def zeropadding3d(L, k, cf):
    return image(cf, 2, 3, 2, 2), [L.ZeroPadding3D(padding=(1, 2, 1))]


def pooling1d(L, k, cf):
    if k == 1:
        layers = [
            L.MaxPooling1D(pool_length=3, stride=2),
            L.AveragePooling1D(pool_length=2),
        ]
    else:
        layers = [L.MaxPooling1D(3, strides=2), L.AveragePooling1D(2)]
    return [11, 3], layers


def pooling2d(L, k, cf):
    if k == 1:
        layers = [L.AveragePooling2D(pool_size=(3, 2), strides=(1, 2))]
    else:
        layers = [L.AveragePooling2D((3, 2), strides=(1, 2))]
    return image(cf, 2, 7, 8), layers


def pooling3d(L, k, cf):
    return image(cf, 2, 4, 6, 4), [
        L.MaxPooling3D(pool_size=(2, 3, 2)),
        L.AveragePooling3D(pool_size=(2, 1, 2)),
    ]


def global1d(L, k, cf):
    return [6, 3], [L.GlobalMaxPooling1D()]


def global1d_avg(L, k, cf):
    return [6, 3], [L.GlobalAveragePooling1D()]


def global2d(L, k, cf):
    return image(cf, 3, 4, 5), [L.GlobalAveragePooling2D()]


def global2d_max(L, k, cf):
    return image(cf, 3, 4, 5), [L.GlobalMaxPooling2D()]


def global3d(L, k, cf):
    if not hasattr(L, "GlobalAveragePooling3D"):
        raise Unavailable("no global 3D pooling in this release")
    return image(cf, 3, 3, 4, 2), [
        L.GlobalAveragePooling3D() if cf else L.GlobalMaxPooling3D()
    ]


def leakyrelu(L, k, cf):
    return [6], [L.Dense(5), L.LeakyReLU(alpha=0.2)]


def prelu(L, k, cf):
    return [6], [L.Dense(5), L.PReLU()]


def prelu_shared(L, k, cf):
    need(k, 2, "PReLU's shared_axes is Keras 2's")
    axes = [2, 3] if cf else [1, 2]
    return image(cf, 2, 4, 3), [L.PReLU(shared_axes=axes)]


def elu(L, k, cf):
    return [6], [L.Dense(5), L.ELU(alpha=0.7)]


def thresholdedrelu(L, k, cf):
    return [6], [L.Dense(5), L.ThresholdedReLU(theta=0.3)]


def relu_layer(L, k, cf):
    need(k, 2, "the ReLU layer is Keras 2.2's")
    if not hasattr(L, "ReLU"):
        raise Unavailable("no ReLU layer in this release")
    return [6], [L.Dense(5), L.ReLU(max_value=1.5)]


def softmax_layer(L, k, cf):
    need(k, 2, "the Softmax layer is Keras 2.1.3's")
    return [6], [L.Dense(5), L.Softmax()]


def hard_sigmoid(L, k, cf):
    """Keras 1 and 2's hard_sigmoid is 0.2 x + 0.5, clipped (Keras 3's has
    slope 1/6)."""
    return [6], [L.Dense(5, activation="hard_sigmoid")]


def shapes(L, k, cf):
    if k == 1:
        dense = L.TimeDistributedDense(4)
    else:
        dense = L.TimeDistributed(L.Dense(4))
    return [12], [
        L.Reshape((3, 4)),
        L.Permute((2, 1)),
        dense,
        L.Flatten(),
        L.RepeatVector(2),
    ]


def time_distributed(L, k, cf):
    return [4, 5], [L.TimeDistributed(L.Dense(3))]


def noise(L, k, cf):
    if k == 1:
        layers = [L.GaussianNoise(0.5), L.GaussianDropout(0.3), L.Dropout(0.2)]
    else:
        layers = [
            L.GaussianNoise(0.5),
            L.GaussianDropout(0.3),
            L.Dropout(0.2),
            L.AlphaDropout(0.1),
        ]
    layers += [L.ActivityRegularization(l1=0.01, l2=0.01), L.Dense(3)]
    return [6], layers


def spatial_dropout(L, k, cf):
    return [5, 4], [L.SpatialDropout1D(0.3), L.Dense(2)]


def spatial_dropout2d(L, k, cf):
    return image(cf, 2, 3, 4), [L.SpatialDropout2D(0.3), L.SpatialDropout2D(0.1)]


def spatial_dropout3d(L, k, cf):
    return image(cf, 2, 3, 2, 2), [L.SpatialDropout3D(0.3)]


def embedding(L, k, cf):
    return "ids", [L.Embedding(11, 4, input_length=5), L.Flatten()]


def masking_lstm(L, k, cf):
    """Masking first (BatchNormalization after the LSTM): the masked steps
    are those whose inputs are all 0."""
    return ("bn last", [6, 4]), [
        L.Masking(mask_value=0.0, input_shape=(6, 4)),
        L.LSTM(3),
    ]


def simple_rnn(L, k, cf):
    return [5, 4], [L.SimpleRNN(3, return_sequences=True)]


def gru(L, k, cf):
    return [5, 4], [L.GRU(3, go_backwards=True)]


def lstm(L, k, cf):
    return [5, 4], [L.LSTM(3, return_sequences=True)]


def gru_gpu(L, k, cf):
    if k != 1:
        raise Unavailable("consume_less is Keras 1's")
    return [5, 4], [L.GRU(3, consume_less="gpu")]


def lstm_gpu(L, k, cf):
    if k != 1:
        raise Unavailable("consume_less is Keras 1's")
    return [5, 4], [L.LSTM(3, consume_less="gpu", return_sequences=True)]


def gru_reset_after(L, k, cf):
    need(k, 2, "reset_after is Keras 2.1's")
    return [5, 4], [L.GRU(3, reset_after=True, recurrent_activation="sigmoid")]


def bidirectional(L, k, cf):
    if not hasattr(L, "Bidirectional"):
        raise Unavailable("no Bidirectional in this release")
    return [5, 4], [L.Bidirectional(L.LSTM(3), merge_mode="concat")]


def convlstm2d(L, k, cf):
    """An odd kernel: Theano's "same" padding (the recurrent convolution's)
    shifts by one for even ones, which Keras 3 cannot compute (refused)."""
    if not hasattr(L, "ConvLSTM2D"):
        raise Unavailable("no ConvLSTM2D in this release")
    if k == 1:
        layer = L.ConvLSTM2D(3, 3, 3, return_sequences=True)
    else:
        layer = L.ConvLSTM2D(3, (3, 3), return_sequences=True)
    return [3] + image(cf, 2, 5, 4), [layer]


def suffixed_names(L, k, cf):
    """Keras 1 on TensorFlow: a layer name that an earlier model of the
    session used gets its variables suffixed (named_W_1:0, norm_gamma_1:0).
    Also written as json.dump(model.to_json()) (<name>.double.json)."""
    if k != 1:
        raise Unavailable("Keras 1.x's own variable names")
    from keras.models import Sequential

    earlier = Sequential()
    earlier.add(L.Dense(5, name="named", input_shape=(6,)))
    earlier.add(L.BatchNormalization(name="norm"))
    return [6], [L.Dense(5, name="named"), L.BatchNormalization(name="norm")]


def _sequential(L, layers):
    import importlib

    model = importlib.import_module(L.__name__.rsplit(".", 1)[0] + ".models")
    built = model.Sequential()
    for layer in layers:
        built.add(layer)
    return built


def nested_sequential(L, k, cf):
    """A Sequential used as a layer of a Sequential."""
    inner = _sequential(L, [L.Dense(5, input_shape=(6,)), L.BatchNormalization()])
    return ("model", _sequential(L, [L.BatchNormalization(input_shape=(6,)),
                                     inner, L.Dense(3)]))  # fmt: skip


def nested_model(L, k, cf):
    """A functional Model used as a layer of a Sequential."""
    import importlib

    models = importlib.import_module(L.__name__.rsplit(".", 1)[0] + ".models")
    x = L.Input(shape=(6,))
    y = L.BatchNormalization()(L.Dense(5)(x))
    if k == 1:
        inner = models.Model(input=x, output=y)
    else:
        inner = models.Model(inputs=x, outputs=y)
    return ("model", _sequential(L, [L.BatchNormalization(input_shape=(6,)),
                                     inner, L.Dense(3)]))  # fmt: skip


def _merge_of_sequentials(mode):
    def builder(L, k, cf):
        if k != 1:
            raise Unavailable("the Merge layer of models is Keras 1's")
        # tanh: a product of two unbounded branches diverges under SGD.
        left = _sequential(
            L, [L.BatchNormalization(input_shape=(6,)), L.Dense(4, activation="tanh")]
        )
        right = _sequential(L, [L.Dense(4, input_shape=(6,), activation="tanh")])
        return ("model", _sequential(L, [L.Merge([left, right], mode=mode),
                                         L.Dense(3)]))  # fmt: skip

    builder.__name__ = "merge_models_" + mode
    builder.__doc__ = "Keras 1's Merge of two Sequentials, mode=%r." % mode
    return builder


def _functional_merge(mode):
    def builder(L, k, cf):
        import importlib

        models = importlib.import_module(L.__name__.rsplit(".", 1)[0] + ".models")
        x = L.Input(shape=(6,))
        a = L.Dense(4, activation="tanh")(L.BatchNormalization()(x))
        b = L.Dense(4, activation="tanh")(x)
        if k == 1:
            merged = L.merge([a, b], mode=mode)
        else:
            classes = {"concat": "Concatenate", "sum": "Add", "mul": "Multiply",
                       "ave": "Average", "max": "Maximum"}  # fmt: skip
            merged = getattr(L, classes[mode])()([a, b])
        y = L.Dense(3)(merged)
        if k == 1:
            return ("model", models.Model(input=x, output=y))
        return ("model", models.Model(inputs=x, outputs=y))

    builder.__name__ = "merge_" + mode
    builder.__doc__ = "A functional model's merge of two branches, %r." % mode
    return builder


MERGES = [_merge_of_sequentials(m) for m in ("concat", "sum", "mul", "ave", "max")]
MERGES += [_functional_merge(m) for m in ("concat", "sum", "mul", "ave", "max")]


def _cudnn(kind):
    """CuDNNGRU/CuDNNLSTM (Keras 2.1.3 to 2.3, TensorFlow): their weights are
    saved on a CPU (random values: they run on a GPU only), and the release
    itself converts them into the twin it can run (GRU(reset_after=True,
    recurrent_activation="sigmoid") or LSTM(recurrent_activation="sigmoid"))
    in load_weights: the predictions are that twin's."""

    def builder(L, k, cf):
        if not hasattr(L, "CuDNN" + kind):
            raise Unavailable("no CuDNN%s in this release" % kind)
        return [5, 4], [getattr(L, "CuDNN" + kind)(3, return_sequences=True)]

    def twin(L):
        options = {"recurrent_activation": "sigmoid"}
        if kind == "GRU":
            options["reset_after"] = True
        return [getattr(L, kind)(3, return_sequences=True, **options)]

    builder.__name__ = "cudnn_" + kind.lower()
    builder.__doc__ = _cudnn.__doc__
    builder.twin = twin
    return builder


FAMILIES = [
    conv2d_rect, atrous2d, conv3d, separable2d, separable1d, depthwise2d,
    deconv2d, deconv3d, upsampling, upsampling2d, upsampling3d, cropping,
    cropping2d, cropping3d, zeropadding, zeropadding2d, zeropadding3d,
    pooling1d, pooling2d, pooling3d, global1d, global1d_avg, global2d,
    global2d_max, global3d, leakyrelu, prelu, prelu_shared, elu,
    thresholdedrelu, relu_layer, softmax_layer, hard_sigmoid, shapes,
    time_distributed, noise, spatial_dropout, spatial_dropout2d,
    spatial_dropout3d, embedding, masking_lstm, simple_rnn, gru, lstm,
    gru_gpu, lstm_gpu, gru_reset_after, bidirectional, suffixed_names,
    nested_sequential, nested_model, _cudnn("GRU"), _cudnn("LSTM"),
] + MERGES + [convlstm2d]  # fmt: skip


# ---------------------------------------------------------------------------


def build(keras, k, cf, builder):
    L = keras.layers
    shape, layers = builder(L, k, cf)
    if shape == "model":  # built whole; its inputs all have one shape
        shapes = layers.input_shape
        shapes = shapes if isinstance(shapes, list) else [shapes]
        return layers, list(shapes[0][1:])
    model = generate.models_module(keras).Sequential()
    if shape == "ids":
        model.add(layers[0])
        model.add(L.BatchNormalization())
        for layer in layers[1:]:
            model.add(layer)
        return model, None
    if shape[0] == "bn last":
        shape = shape[1]
        for layer in layers:
            model.add(layer)
        model.add(L.BatchNormalization())
        return model, shape
    model.add(L.BatchNormalization(input_shape=tuple(shape)))
    for layer in layers:
        model.add(layer)
    return model, shape


def write_cudnn(keras, builder, out_dir, name, x, rng):
    """A CuDNN layer cannot even be called on a tensor where TensorFlow has
    no GPU kernels: its weights are made by build() (random values), written
    by the release's own save_weights_to_hdf5_group, its JSON by to_json()
    of a model in a graph that is never run; the predictions are those of
    the twin the release's load_weights converts them into."""
    import h5py
    import numpy as np
    import tensorflow as tf

    L = keras.layers
    saving = __import__("keras.engine.saving", fromlist=["saving"])
    shape = tuple(x.shape[1:])
    (layer,) = builder(L, 2, False)[1]
    config = dict(layer.get_config(), name="recurrent")
    with tf.Graph().as_default():
        model = generate.models_module(keras).Sequential()
        model.add(L.BatchNormalization(input_shape=shape, name="bn"))
        model.add(type(layer).from_config(config))
        text = model.to_json()
    bn = L.BatchNormalization(name="bn")
    bn.build((None,) + shape)
    recurrent = type(layer).from_config(config)
    recurrent.build((None,) + shape)
    for built in (bn, recurrent):
        values = [np.abs(rng.randn(*w.shape)) * 0.5 for w in built.get_weights()]
        built.set_weights([v.astype("float32") for v in values])
    files = {"weights": name + ".weights.h5", "json": name + ".json"}
    path = os.path.join(out_dir, files["weights"])
    with h5py.File(path, "w") as f:
        saving.save_weights_to_hdf5_group(f, [bn, recurrent])
    with open(os.path.join(out_dir, files["json"]), "w") as f:
        f.write(text)
    twin = generate.models_module(keras).Sequential()
    twin.add(L.BatchNormalization(input_shape=shape, name="bn"))
    for twin_layer in builder.twin(L):
        twin.add(twin_layer)
    twin.load_weights(path)
    y = np.asarray(twin.predict(x, batch_size=N_TEST), dtype="float32")
    np.savez(os.path.join(out_dir, name + ".npz"), x=x, y=y)
    files["npz"] = name + ".npz"
    return files


def first_line(error):
    lines = str(error).splitlines() or [""]
    return "%s: %s" % (type(error).__name__, lines[0][:300])


def output_shape(model):
    return tuple(int(d) for d in model.output_shape[1:])


def main():
    args = generate.parse_args()
    family = generate.family_of(args.release)
    home = generate.setup_environment(args, family)
    import numpy as np

    np.random.seed(args.seed)
    keras = generate.import_keras(args, family)
    out_dir = os.path.abspath(args.out)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    cf = args.backend == "theano"
    rng = np.random.RandomState(args.seed)
    manifest = {
        "release": args.release,
        "keras_version": getattr(keras, "__version__", None),
        "backend": args.backend,
        "generator": "scripts/real_fixtures/zoo.py",
        "channels_first": cf,
        "train": {
            "optimizer": "sgd",
            "loss": "mse",
            "steps": STEPS,
            "batch_size": BATCH,
            "x": "standard normal * 3 + 2",
            "seed": args.seed,
        },  # fmt: skip
        "models": [],
        "unavailable": {},
        "workarounds": generate.WORKAROUNDS,
    }
    # ZOO_ONLY=name,name: those families only, merged into OUT's manifest.
    only = [n for n in os.environ.get("ZOO_ONLY", "").split(",") if n]
    path = os.path.join(out_dir, "manifest.json")
    if only and os.path.exists(path):
        with open(path) as f:
            kept = json.load(f)
        manifest["models"] = [m for m in kept["models"] if m["name"] not in only]
        manifest["unavailable"] = dict(
            (k, v) for k, v in kept["unavailable"].items() if k not in only
        )
    for builder in FAMILIES:
        name = builder.__name__
        if only and name not in only:
            continue
        print("==", args.release, args.backend, name)
        sys.stdout.flush()
        try:
            if hasattr(builder, "twin"):
                builder(keras.layers, family, cf)  # Unavailable?
                x = (rng.randn(N_TEST, 5, 4) * 3 + 2).astype("float32")
                files = write_cudnn(keras, builder, out_dir, name, x, rng)
                manifest["models"].append({
                    "name": name, "inputs": 1, "description": builder.__doc__,
                    "classes": ["BatchNormalization", "CuDNN" + name[6:].upper()],
                    "files": files,
                    "stored": generate.describe_weights_file(
                        os.path.join(out_dir, files["weights"])),
                })  # fmt: skip
                continue
            model, shape = build(keras, family, cf, builder)
            model.compile(optimizer="sgd", loss="mse")
        except Unavailable as why:
            manifest["unavailable"][name] = str(why)
            continue
        except Exception as error:  # the release cannot build it: say why
            traceback.print_exc()
            manifest["unavailable"][name] = first_line(error)
            continue
        if shape is None:
            x_all = rng.randint(1, 11, size=(N_TRAIN + N_TEST, 5)).astype("int32")
        else:
            x_all = (rng.randn(N_TRAIN + N_TEST, *shape) * 3 + 2).astype("float32")
        x_train, x = x_all[:N_TRAIN], x_all[N_TRAIN:]
        if name == "masking_lstm":
            x[:, -2:] = 0.0  # masked steps
        y_train = rng.randn(N_TRAIN, *output_shape(model)).astype("float32")
        inputs = len(model.inputs) if hasattr(model, "inputs") else 1

        if inputs > 1:  # the same shape each, stacked on a first axis
            x = np.stack([x] + [x * 0.5 - 1] * (inputs - 1))
        try:
            for step in range(STEPS):
                i = (step * BATCH) % N_TRAIN
                batch = x_train[i : i + BATCH]
                batch = [batch] * inputs if inputs > 1 else batch
                model.train_on_batch(batch, y_train[i : i + BATCH])
            xs = list(x) if inputs > 1 else x
            y = np.asarray(model.predict(xs, batch_size=N_TEST), dtype="float32")
        except Exception as error:
            traceback.print_exc()
            manifest["unavailable"][name] = first_line(error)
            continue
        if not np.all(np.isfinite(y)):  # training diverged: say so
            manifest["unavailable"][name] = "not finite after training"
            continue
        files = generate.save_model_files(model, out_dir, name, family, x, y)
        if name == "suffixed_names":
            with open(os.path.join(out_dir, name + ".double.json"), "w") as f:
                json.dump(model.to_json(), f)  # a common tutorial idiom
            files["double_json"] = name + ".double.json"
        manifest["models"].append(
            {
                "name": name,
                "inputs": inputs,
                "description": (builder.__doc__ or "").strip() or None,
                "classes": [type(layer).__name__ for layer in model.layers],
                "files": files,
                "stored": generate.describe_weights_file(
                    os.path.join(out_dir, files["weights"])
                ),
            }
        )
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(generate.to_native(manifest), f, indent=1, sort_keys=True)
        f.write("\n")
    shutil.rmtree(home, ignore_errors=True)
    print("wrote", out_dir)


if __name__ == "__main__":
    main()
