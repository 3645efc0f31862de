"""Writes notebooks/*.ipynb from the cell sources below and executes them, so
that they are committed with their outputs (plots included).

    python scripts/make_notebooks.py [NAME ...]

With names (such as ``01_quickstart``), only those notebooks are rewritten.
The notebooks run on the current KERAS_BACKEND (the committed ones on the
default, TensorFlow), in a temporary folder, with the kernel ``python3`` of
this Python environment; tests/test_notebooks.py executes them again.
"""

import os
import re
import sys
import tempfile
import textwrap
import time

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "notebooks")
# Per cell; the slowest cell (notebook 02's training) takes about a minute.
CELL_TIMEOUT_S = 600


def markdown(text):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text):
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip())


QUICKSTART = [
    markdown(
        """
        # keras_bn quickstart

        `keras_bn.BatchNormalization` is the 2015 Keras `BatchNormalization`
        layer (Keras 0.1.3 to 0.3.1) on Keras 3: its weights are `gamma`,
        `beta`, a running **mean** and a running **standard deviation**, and
        mode 0 computes `gamma * (x - mean) / (std + epsilon) + beta`. It
        runs on TensorFlow, JAX and PyTorch.

        This notebook builds a small `Sequential` model with it, trains it on
        scikit-learn's handwritten digits, looks at the layer's weights, and
        saves the model to a `.keras` file and loads it back.
        """
    ),
    code(
        """
        import os
        import tempfile

        import keras
        import numpy as np

        from keras_bn import BatchNormalization
        from keras_bn.digits import load_split

        print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
        """
    ),
    markdown(
        """
        ## The data

        `load_split` loads `sklearn.datasets.load_digits` (1,797 images of
        8x8 pixels), scales the pixels to [0, 1] and holds out 30% of each
        class for testing.
        """
    ),
    code(
        """
        split = load_split()
        print("train:", split.x_train.shape, "test:", split.x_test.shape)
        """
    ),
    markdown(
        """
        ## A model, as in 2015

        As in the seed, the layer can be given the shape of one sample and
        added to a `Sequential` model. It goes between a `Dense` layer and
        its nonlinearity; the `Dense` layer needs no bias, since the
        normalization subtracts it again and `beta` takes its place.
        `epsilon=1e-6`, `mode=0` and `momentum=0.9` are the seed's defaults,
        spelled out here.
        """
    ),
    code(
        """
        keras.utils.set_random_seed(0)
        model = keras.Sequential(name="digits")
        model.add(keras.Input((64,)))
        model.add(keras.layers.Dense(100, use_bias=False))
        model.add(BatchNormalization((100,), epsilon=1e-6, mode=0, momentum=0.9))
        model.add(keras.layers.Activation("relu"))
        model.add(keras.layers.Dense(100, use_bias=False))
        model.add(BatchNormalization((100,)))
        model.add(keras.layers.Activation("relu"))
        model.add(keras.layers.Dense(10, activation="softmax"))
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.1),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.summary()
        """
    ),
    code(
        """
        history = model.fit(
            split.x_train,
            split.y_train,
            batch_size=60,
            epochs=10,
            validation_data=(split.x_test, split.y_test),
            verbose=2,
        )
        loss, accuracy = model.evaluate(split.x_test, split.y_test, verbose=0)
        print(f"test accuracy {accuracy:.1%}")
        """
    ),
    markdown(
        """
        ## The weights

        `get_weights()` returns `[gamma, beta, running_mean, running_std]`,
        the seed's order. `gamma` and `beta` are trained by the optimizer;
        the running estimates follow each training batch,
        `running = 0.9 * running + 0.1 * batch_value`, and are what the layer
        normalizes with at inference.
        """
    ),
    code(
        """
        bn = model.layers[1]
        names = ["gamma", "beta", "running_mean", "running_std"]
        for name, weight in zip(names, bn.get_weights()):
            print(f"{name:>12}: shape {weight.shape}, first {np.round(weight[:3], 3)}")
        """
    ),
    markdown(
        """
        At inference the layer computes
        `gamma * (x - running_mean) / (running_std + epsilon) + beta`. Worked
        out by hand with NumPy on the first `Dense` layer's output:
        """
    ),
    code(
        """
        gamma, beta, running_mean, running_std = bn.get_weights()
        dense_output = keras.ops.convert_to_numpy(model.layers[0](split.x_test))
        by_hand = gamma * (dense_output - running_mean) / (running_std + 1e-6) + beta
        by_layer = keras.ops.convert_to_numpy(bn(dense_output, training=False))
        print("largest difference:", np.max(np.abs(by_hand - by_layer)))
        """
    ),
    markdown(
        """
        ## Saving and loading

        The layer is registered with Keras' serialization, so a whole model
        saves to the `.keras` format and loads back with
        `keras.models.load_model` once `keras_bn` is imported.
        """
    ),
    code(
        """
        path = os.path.join(tempfile.mkdtemp(), "digits.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        print(type(restored.layers[1]))
        before = model.predict(split.x_test, verbose=0)
        after = restored.predict(split.x_test, verbose=0)
        print("largest difference in the predictions:", np.max(np.abs(after - before)))
        for saved, loaded in zip(model.get_weights(), restored.get_weights()):
            np.testing.assert_array_equal(saved, loaded)
        """
    ),
]


INTERNAL_COVARIATE_SHIFT = [
    markdown(
        """
        # Internal covariate shift: the paper's Figure 1 on digits

        **The claim.** The blog post this project started from (in Chinese)
        and the paper it summarizes (Ioffe and Szegedy, 2015) say that
        training is slow because each layer's input distribution keeps
        changing as the layers before it learn (*internal covariate
        shift*), which forces careful initialization and small learning
        rates; and that Batch Normalization, by normalizing each neuron's
        input over the mini-batch, removes the shift and so speeds training
        up.

        **The evidence in the paper.** Figure 1 trains an MNIST network with
        3 fully connected hidden layers of 100 sigmoids, with and without
        Batch Normalization before each nonlinearity, and plots (a) the test
        accuracy over training, and (b, c) the 15th, 50th and 85th
        percentiles of one sigmoid's input over training. With the
        normalization, the accuracy rises sooner and higher, and the
        percentiles stay put; without it, they wander.

        **Here.** The same experiment on scikit-learn's 1,797 digits of 8x8
        pixels, small enough for a CPU: a 70/30 stratified split, pixels
        scaled to [0, 1], Dense weights from N(0, 0.05), SGD with learning
        rate 0.5 on batches of 60. `keras_bn.digits` implements it (the
        same code runs `scripts/demo.py`). Besides `keras_bn`, Keras' own
        `keras.layers.BatchNormalization(epsilon=1e-6, momentum=0.9)` trains
        a third network, as a cross-check of the port.
        """
    ),
    code(
        """
        import dataclasses

        import keras
        import numpy as np

        from keras_bn import BatchNormalization, digits

        print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
        """
    ),
    code(
        """
        STEPS = 10_500  # 500 passes over the 1,257 training images

        networks = {
            "without BN": None,
            "with BN": BatchNormalization,
            "with stock Keras BN": lambda: keras.layers.BatchNormalization(
                epsilon=1e-6, momentum=0.9
            ),
        }
        # Every network starts from the same Dense weights and sees the
        # samples in the same order; unit 0 of the last hidden layer is the
        # sigmoid whose input is recorded, at every checkpoint (21 steps).
        records = digits.compare(networks, STEPS, seed=0, record_unit=0)

        for label, record in records.items():
            print(
                f"{label:>20}: 95% test accuracy after "
                f"{record.steps_to_reach(0.95)} steps, "
                f"{record.test_accuracy[-1]:.1%} after {STEPS} "
                f"({record.seconds:.0f} s)"
            )
        """
    ),
    markdown(
        """
        ## Figure 1

        (a) Test accuracy against training steps, on a log axis: the
        networks reach 95% (dashed) orders of magnitude apart. (b, c) The
        15th, 50th and 85th percentiles, over the 540 test images, of the
        input of one sigmoid of the last hidden layer, without and with
        `keras_bn.BatchNormalization`.
        """
    ),
    code(
        """
        %matplotlib inline
        # The stock layer's curve joins panel (a); its percentiles are compared
        # in numbers below rather than in a panel of their own.
        plotted = dict(records)
        plotted["with stock Keras BN"] = dataclasses.replace(
            records["with stock Keras BN"], percentiles=None
        )
        digits.plot_figure1(plotted)
        """
    ),
    markdown(
        """
        ## The numbers behind the panels

        How far each percentile moves over training: its range over all
        checkpoints, and over the second half of the training only.
        """
    ),
    code(
        """
        second_half = slice(len(records["without BN"].steps) // 2, None)
        for label, record in records.items():
            start, end = record.percentiles[0], record.percentiles[-1]
            print(label)
            for column, percentile in enumerate(digits.PERCENTILES):
                values = record.percentiles[:, column]
                late = values[second_half]
                print(
                    f"  {percentile}th: {start[column]:+.2f} at step 0, "
                    f"{end[column]:+.2f} at the end; range {np.ptp(values):.2f}, "
                    f"in the second half {np.ptp(late):.2f}"
                )
        """
    ),
    markdown(
        """
        The cross-check: in training, `keras_bn` and the stock layer compute
        the same thing up to `epsilon` (1e-6) in the denominator, so from the
        same start the two networks should learn the same weights. At
        inference they differ only while the running estimates still
        remember their initial values (a std of 1 for `keras_bn`, a variance
        of 1 for the stock layer), that is, over the first few dozen steps.
        """
    ),
    code(
        """
        ours, stock = records["with BN"], records["with stock Keras BN"]
        after_100 = ours.steps >= 100
        accuracy_gap = np.abs(ours.test_accuracy - stock.test_accuracy)[after_100]
        percentile_gap = np.abs(ours.percentiles - stock.percentiles)[after_100]
        print(f"largest accuracy gap after step 100: {accuracy_gap.max():.2%}")
        print(f"largest percentile gap after step 100: {percentile_gap.max():.3f}")
        """
    ),
    markdown(
        """
        ## What the plots show, and what they do not

        The numbers quoted here are those of the run stored in this notebook
        (TensorFlow backend, seed 0); other backends and seeds move them a
        little, not the picture.

        - **Speed.** With Batch Normalization the network passes 95% test
          accuracy after 63 steps; without it, the network stays at chance
          level (10%) for about 3,000 steps and needs 6,699 steps, a hundred
          times as many, to get there (the paper's Figure 1a shows the same
          head start on MNIST). At the end it is also less accurate: 95.7%
          against 99.1%. The stock Keras layer draws the `keras_bn` curve
          once the running estimates have forgotten their initial values.
        - **The sigmoid's input.** Without normalization its distribution
          is not stable on this small problem either: all three percentiles
          first slide down together, from +0.2 to about -2.8, towards the
          sigmoid's flat region, while the network is stuck at chance; then
          they spread apart and keep drifting as the network learns, still
          by 1.1 to 1.4 over the second half of the training. With
          normalization they settle within the first hundred steps, near
          -1.8, +0.2 and +1.8, and then move by about 0.3 (spikes included).
          This is the picture of the paper's Figures 1b and 1c.
        - **What this does not show.** The experiment shows that the
          normalized network has stable layer inputs *and* trains faster;
          it does not show that the first causes the second. The long
          plateau without normalization also fits a plainer explanation:
          with small initial weights, a stack of sigmoids passes back tiny
          gradients until its weights grow. Later work (Santurkar et al.,
          *How Does Batch Normalization Help Optimization?*, NeurIPS 2018)
          injected noise after Batch Normalization layers to re-create a
          shifting input distribution and found the networks still trained
          fast; they credit the normalization with a smoother loss instead.
          The blog's account (internal covariate shift slows training, Batch
          Normalization fixes it) is the paper's hypothesis; these plots are
          consistent with it, not a proof of it.
        - **Noise.** These are single runs with one seed. With learning
          rate 0.5 the normalized networks' accuracy also dips once, briefly
          (to about 59% near step 3,500). `scripts/demo.py --seed N` reruns
          the comparison with other initial weights and sample orders.
        """
    ),
]

LEGACY_WEIGHTS = [
    markdown(
        """
        # Weights from 2015: load, check, convert, fold

        In 2015 a Keras 0.3 model saved its weights with
        `model.save_weights("weights.h5")`: an HDF5 file in a layout that
        Keras has not read since 1.0, whose `BatchNormalization` keeps a
        running **standard deviation** where every later Batch
        Normalization keeps a running variance.

        This notebook writes such a file, looks inside it, loads it with
        `keras_bn.legacy` and checks the predictions against the seed's
        formula written out in NumPy. Then it converts the layer to Keras'
        own `keras.layers.BatchNormalization`, folds it into the `Dense`
        layer before it for inference, and compares the seed's two modes,
        featurewise (mode 0) and samplewise (mode 1), on the same data.
        """
    ),
    code(
        """
        import h5py
        import keras
        import matplotlib.pyplot as plt
        import numpy as np

        import keras_bn
        from keras_bn import BatchNormalization, cli, convert, legacy
        from keras_bn.digits import load_split

        print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
        """
    ),
    markdown(
        """
        ## A stand-in for a 2015 model

        No 2015 file is at hand, so this notebook makes one. The model is
        one a Keras 0.3 user could have written for scikit-learn's 8x8
        digits: `Dense` (64 pixels to 32 units), `BatchNormalization`,
        ReLU, `Dense` (10 classes) with softmax. `BatchNormalization((32,))`
        takes the shape of one sample, as in the seed, and `mode` is the
        seed's argument. A few epochs of training give realistic weights;
        only these arrays go on to the file.
        """
    ),
    code(
        """
        EPSILON = 1e-6  # the seed's default


        def seed_model(mode):
            # Keras 0.x's Dense always had a bias.
            return keras.Sequential(
                [
                    keras.Input((64,)),
                    keras.layers.Dense(32, name="hidden"),
                    BatchNormalization((32,), epsilon=EPSILON, mode=mode, name="bn"),
                    keras.layers.Activation("relu", name="relu"),
                    keras.layers.Dense(10, activation="softmax", name="output"),
                ],
                name=f"digits_mode{mode}",
            )


        split = load_split()
        keras.utils.set_random_seed(0)
        trained = seed_model(mode=0)
        trained.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.1),
            loss="sparse_categorical_crossentropy",
        )
        trained.fit(split.x_train, split.y_train, batch_size=60, epochs=10, verbose=0)
        # One list of NumPy arrays per layer, in get_weights() order.
        arrays = [layer.get_weights() for layer in trained.layers]
        for layer, params in zip(trained.layers, arrays):
            print(f"{layer.name:>20}: {[p.shape for p in params]}")
        """
    ),
    markdown(
        """
        ## The Keras 0.x file

        Keras 0.1 to 0.3's `Sequential.save_weights` wrote, with h5py:

        - a root attribute `nb_layers`, the number of layers;
        - one group `layer_{k}` per layer, `k` from 0, with an attribute
          `nb_params` and datasets `param_0`, `param_1`, ... in the order of
          the layer's `get_weights()`. A layer without weights (here the
          `Activation`) gets a group with `nb_params = 0`.

        A `BatchNormalization` group holds `gamma`, `beta`, `running_mean`
        and `running_std` (from Keras 0.2.0 on; 0.1.x saved only `gamma`
        and `beta`). Theano computed in float32.
        """
    ),
    code(
        """
        path = "digits_keras03.h5"
        with h5py.File(path, "w") as file:
            file.attrs["nb_layers"] = len(arrays)
            for k, params in enumerate(arrays):
                group = file.create_group(f"layer_{k}")
                group.attrs["nb_params"] = len(params)
                for n, param in enumerate(params):
                    group.create_dataset(f"param_{n}", data=param.astype("float32"))
        """
    ),
    markdown(
        """
        `keras-bn inspect FILE` tells what a legacy file holds; in a shell,
        `keras-bn inspect digits_keras03.h5`. Here the same command runs
        in-process:
        """
    ),
    code(
        """
        exit_status = cli.main(["inspect", path])
        """
    ),
    markdown(
        """
        ## Loading it

        Build the model the file came from, then `legacy.load_weights`: the
        file's layers that hold arrays go, in order, into the model's layers
        that hold weights. Every Keras 0.x file holds a standard deviation
        with epsilon 1e-6, so `running_std` goes into
        `keras_bn.BatchNormalization` as it is.
        """
    ),
    code(
        """
        model = seed_model(mode=0)
        legacy.load_weights(model, path)
        bn = model.layers[1]
        names = ["gamma", "beta", "running_mean", "running_std"]
        for name, weight in zip(names, bn.get_weights()):
            print(f"{name:>12}: first {np.round(weight[:4], 3)}")
        """
    ),
    markdown(
        """
        ## Checking against the seed's formula

        At inference the seed's mode 0 computes
        `gamma * (x - running_mean) / (running_std + epsilon) + beta`.
        Below, the whole model written out in NumPy (float64), with the
        arrays read from the file directly, without `keras_bn`:
        """
    ),
    code(
        """
        def read_layer(file, k):
            group = file[f"layer_{k}"]
            return [group[f"param_{n}"][()] for n in range(group.attrs["nb_params"])]


        with h5py.File(path, "r") as file:
            layers = [read_layer(file, k) for k in range(file.attrs["nb_layers"])]
        (w0, b0), (gamma, beta, running_mean, running_std), _, (w1, b1) = [
            [np.float64(p) for p in params] for params in layers
        ]


        def softmax(z):
            z = np.exp(z - z.max(axis=-1, keepdims=True))
            return z / z.sum(axis=-1, keepdims=True)


        def seed_predict(x):
            h = x @ w0 + b0
            h = gamma * (h - running_mean) / (running_std + EPSILON) + beta
            return softmax(np.maximum(h, 0.0) @ w1 + b1)


        x, y = split.x_test, split.y_test
        expected = seed_predict(np.float64(x))
        predicted = model.predict(x, verbose=0)
        difference = np.max(np.abs(predicted - expected))
        print(f"largest difference from the seed's formula: {difference:.1e}")
        print(f"test accuracy {np.mean(predicted.argmax(axis=1) == y):.1%}")
        """
    ),
    markdown(
        """
        ## Converting to Keras' own layer

        `keras.layers.BatchNormalization` keeps a variance and computes
        `gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta`.
        The two layers agree when the denominators do:
        `sqrt(moving_variance + epsilon_new) = running_std + epsilon_old`,
        so `convert.to_keras` sets
        `moving_variance = (running_std + epsilon_old)**2 - epsilon_new`.
        Both epsilons enter; here the new layer gets Keras' default, 1e-3.
        """
    ),
    code(
        """
        stock_bn = convert.to_keras(bn, epsilon=1e-3)
        stock_model = keras.Sequential(
            [keras.Input((64,)), model.layers[0], stock_bn, *model.layers[2:]]
        )
        moving_variance = stock_bn.moving_variance.numpy()
        print("running_std + 1e-6:          ", np.round(running_std[:4] + EPSILON, 5))
        print("moving_variance:             ", np.round(moving_variance[:4], 5))
        denominator = np.sqrt(moving_variance[:4] + 1e-3)
        print("sqrt(moving_variance + 1e-3):", np.round(denominator, 5))
        stock_predicted = stock_model.predict(x, verbose=0)
        difference = np.max(np.abs(stock_predicted - predicted))
        print(f"largest difference from keras_bn: {difference:.1e}")
        """
    ),
    markdown(
        """
        Keras 2's own loader put old weights in by position, the standard
        deviation into `moving_variance`. That runs without complaint and
        gives other predictions:
        """
    ),
    code(
        """
        by_position = keras.layers.BatchNormalization(epsilon=1e-3)
        by_position.build((None, 32))
        by_position.set_weights([gamma, beta, running_mean, running_std])
        wrong_model = keras.Sequential(
            [keras.Input((64,)), model.layers[0], by_position, *model.layers[2:]]
        )
        wrong = wrong_model.predict(x, verbose=0)
        difference = np.max(np.abs(wrong - expected))
        print(f"largest difference from the seed's formula: {difference:.2f}")
        changed = np.mean(wrong.argmax(axis=1) != expected.argmax(axis=1))
        print(f"predicted classes that change: {changed:.1%}")
        """
    ),
    markdown(
        """
        ## Folding for inference

        At inference mode 0 is one multiply-add per feature,
        `x * scale + offset` with `scale = gamma / (running_std + epsilon)`
        and `offset = beta - running_mean * scale`. After a `Dense` layer
        without activation, that goes into the `Dense` layer's weights:
        `kernel * scale` and `bias * scale + offset`.
        `keras_bn.fold_batchnorm` returns such a copy, one layer shorter
        (the original model is not changed).
        """
    ),
    code(
        """
        folded, report = keras_bn.fold_batchnorm(model, return_report=True)
        print("before:", [layer.name for layer in model.layers])
        print("after: ", [layer.name for layer in folded.layers])
        print("folded:", report.folded)
        folded_predicted = folded.predict(x, verbose=0)
        difference = np.max(np.abs(folded_predicted - expected))
        print(f"largest difference from the seed's formula: {difference:.1e}")
        """
    ),
    markdown(
        """
        ## Mode 0 against mode 1

        The seed has two modes:

        - **mode 0, featurewise**: each of the 32 features is normalized
          with its own mean and standard deviation over the batch (at
          inference, the running estimates). Over the data, every feature
          has mean 0 and standard deviation 1; one sample's 32 values can
          sit anywhere.
        - **mode 1, samplewise**: each sample is normalized over its own 32
          features, `(x - mean(x)) / (std(x) + epsilon)`, in training and
          at inference alike. Every sample has mean 0 and standard
          deviation 1; one feature across the samples need not.

        Both layers below get the same input, the first `Dense` layer's
        output on the 540 test digits, with `gamma = 1` and `beta = 0` so
        that only the normalization shows. Each point of the plot is one
        feature (left) or one sample (right): its mean and standard
        deviation after normalization.
        """
    ),
    code(
        """
        %matplotlib inline
        dense_output = keras.ops.convert_to_numpy(model.layers[0](x))
        plain = [np.ones(32), np.zeros(32), running_mean, running_std]
        outputs = {}
        for mode in (0, 1):
            layer = BatchNormalization((32,), epsilon=EPSILON, mode=mode, weights=plain)
            normalized = layer(dense_output, training=False)
            outputs[mode] = keras.ops.convert_to_numpy(normalized)

        titles = (
            "each of the 32 features, over the 540 samples",
            "each of the 540 samples, over the 32 features",
        )
        figure, panels = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True)
        for panel, axis, title in zip(panels, (0, 1), titles):
            for mode, marker in ((0, "o"), (1, "x")):
                panel.scatter(
                    outputs[mode].mean(axis=axis),
                    outputs[mode].std(axis=axis),
                    marker=marker,
                    alpha=0.6,
                    label=f"mode {mode}",
                )
            panel.set_title(title)
            panel.set_xlabel("mean after normalization")
            panel.axhline(1.0, color="gray", linewidth=0.5)
            panel.axvline(0.0, color="gray", linewidth=0.5)
            panel.legend()
        panels[0].set_ylabel("standard deviation after normalization")
        plt.show()
        """
    ),
    markdown(
        """
        Mode 0 puts every feature near (0, 1), not on it: its running
        estimates come from the training digits, these are the test digits.
        Mode 1 puts every sample exactly on (0, 1), whatever the data.

        The seed's mode 1 formula in NumPy (population standard deviation,
        no epsilon under the root), against the layer:
        """
    ),
    code(
        """
        h = np.float64(dense_output)
        mean = h.mean(axis=-1, keepdims=True)
        std = h.std(axis=-1, keepdims=True)
        by_hand = (h - mean) / (std + EPSILON)
        difference = np.max(np.abs(outputs[1] - by_hand))
        print(f"mode 1, largest difference from the formula: {difference:.1e}")
        for mode, normalized in outputs.items():
            feature_std, sample_std = normalized.std(axis=0), normalized.std(axis=1)
            print(
                f"mode {mode}: std per feature {feature_std.min():.2f} to "
                f"{feature_std.max():.2f}, per sample {sample_std.min():.2f} to "
                f"{sample_std.max():.2f}"
            )
        """
    ),
    markdown(
        """
        A weights file does not record the mode: it is part of the model,
        as the layer's arguments are. The same file loaded into a mode 1
        model computes something else, with weights that were trained for
        mode 0:
        """
    ),
    code(
        """
        samplewise = seed_model(mode=1)
        legacy.load_weights(samplewise, path)
        for label, network in (("mode 0", model), ("mode 1", samplewise)):
            accuracy = np.mean(network.predict(x, verbose=0).argmax(axis=1) == y)
            print(f"{label}: test accuracy {accuracy:.1%}")
        """
    ),
    markdown(
        """
        ## Summary

        - `legacy.load_weights(model, "weights.h5")` reads Keras 0.x (and
          1.x, 2.x) files into a model built as the original was; the
          predictions match the seed's formula to float32 rounding.
        - `convert.to_keras` gives Keras' own layer with
          `moving_variance = (running_std + epsilon_old)**2 - epsilon_new`:
          the same predictions. Copying the standard deviation into
          `moving_variance` as it is changes them.
        - `keras_bn.fold_batchnorm` removes mode 0 layers that follow a
          `Dense` or convolution, for inference, with the same predictions.
        - Mode 0 normalizes each feature over the samples, mode 1 each
          sample over its features; the file does not say which, the model
          does. `docs/legacy.md` has the other formats and options.
        """
    ),
]

NOTEBOOKS = {
    "01_quickstart": QUICKSTART,
    "02_internal_covariate_shift": INTERNAL_COVARIATE_SHIFT,
    "03_legacy_weights": LEGACY_WEIGHTS,
}


def build(cells):
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


# TensorFlow's C++ start-up log (oneDNN, CUDA, CPU features) reaches the
# kernel's stderr before Python can silence it, and says nothing about the
# notebook: it is left out of the stored outputs.
NATIVE_LOG_LINE = re.compile(
    r"[IWEF]\d{4} |WARNING: All log messages before absl|"
    r"To enable the following instructions|$"
)


def is_native_log(output):
    return (
        output.output_type == "stream"
        and output.name == "stderr"
        and all(NATIVE_LOG_LINE.match(line) for line in output.text.splitlines())
    )


def execute(notebook):
    """Runs ``notebook`` in place, in a temporary working folder."""
    with tempfile.TemporaryDirectory() as folder:
        NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": folder}},
        ).execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not is_native_log(o)]


def main(names):
    unknown = sorted(set(names) - set(NOTEBOOKS))
    if unknown:
        sys.exit(f"unknown notebooks {unknown}; expected some of {sorted(NOTEBOOKS)}")
    os.makedirs(NOTEBOOK_DIR, exist_ok=True)
    for name in names or NOTEBOOKS:
        notebook = build(NOTEBOOKS[name])
        start = time.perf_counter()
        execute(notebook)
        path = os.path.join(NOTEBOOK_DIR, f"{name}.ipynb")
        nbformat.write(notebook, path)
        print(f"{path}: executed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
