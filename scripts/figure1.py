"""The paper's MNIST experiment (its Figure 1) on scikit-learn's digits.

Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training
by Reducing Internal Covariate Shift" (2015, arXiv:1502.03167), train a
network of 3 fully connected hidden layers of 100 sigmoid units, with and
without Batch Normalization before each nonlinearity, and plot (a) the test
accuracy over training and (b, c) the 15th, 50th and 85th percentiles of one
sigmoid's input. This module runs the
same experiment on the 1,797 8x8 images of ``sklearn.datasets.load_digits``,
small enough for a CPU: it is the one implementation behind
``scripts/demo.py`` and the notebooks (data, networks, training);
``figure1_plot`` draws the figure. Both sit beside the demo rather than in
the keras_bn package, which is the layer and its tools: import them with
this folder on ``sys.path`` (Python puts it there for ``scripts/demo.py``;
the notebooks add ``../scripts``).

The set-up (docs/semantics.md, "The paper's MNIST experiment"): inputs scaled to
[0, 1], a 70/30 stratified split, Dense weights drawn from N(0, 0.05), no
bias before a Batch Normalization (its ``beta`` takes the bias's place), a
softmax output, SGD with learning rate 0.5 and batches of 60.

scikit-learn is an optional extra (in a clone of the repository,
``pip install -e ".[demo]"``): it is imported inside the function that needs
it.
"""

import dataclasses
import math
import numbers
import time

import keras
import numpy as np

from keras_bn import BatchNormalization

__all__ = [
    "FIGURE1_NETWORKS",
    "PERCENTILES",
    "DigitsSplit",
    "TrainingRecord",
    "build_model",
    "compare",
    "load_split",
    "train",
]

PERCENTILES = (15, 50, 85)
HIDDEN_LAYERS = 3
HIDDEN_UNITS = 100
CLASSES = 10
WEIGHT_STDDEV = 0.05
BATCH_SIZE = 60
LEARNING_RATE = 0.5
# The paper's two networks; the labels are the plots' legend.
FIGURE1_NETWORKS = {"without BN": None, "with BN": BatchNormalization}
# Fits every backend's memory comfortably: the training rows for this many
# steps are gathered into one array per `fit` call.
STEPS_PER_FIT = 2100


@dataclasses.dataclass(frozen=True)
class DigitsSplit:
    """The digits, pixels scaled to [0, 1] (float32), labels 0 to 9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """What `train` measured at each checkpoint.

    Attributes:
        steps: Training steps (mini-batch updates) done at each checkpoint,
            starting with 0 (the untrained network).
        test_accuracy: Test-set accuracy at each checkpoint.
        percentiles: Array of shape ``(len(steps), 3)``: the 15th, 50th and
            85th percentiles over the test set of the recorded sigmoid's
            input, or None when no unit was recorded.
        seconds: Wall time of the training, checkpoints included.
    """

    steps: np.ndarray
    test_accuracy: np.ndarray
    percentiles: np.ndarray | None
    seconds: float

    def steps_to_reach(self, accuracy):
        """The first checkpoint's step count at which the test accuracy was at
        least ``accuracy``, or None if it never was."""
        reached = np.flatnonzero(self.test_accuracy >= accuracy)
        return int(self.steps[reached[0]]) if reached.size else None


def _check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}.")
    return int(value)


def _check_progress(progress):
    if progress is not None and not callable(progress):
        raise TypeError(
            f"progress: expected None or a callable, got {type(progress).__name__}."
        )


def _check_seed(seed):
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}.")
    return int(seed)


def _check_record_unit(record_unit):
    if record_unit is not None and (
        not isinstance(record_unit, numbers.Integral)
        or isinstance(record_unit, bool)
        or not 0 <= record_unit < HIDDEN_UNITS
    ):
        raise ValueError(
            f"record_unit: expected None or a unit index from 0 to "
            f"{HIDDEN_UNITS - 1}, got {record_unit!r}."
        )


def _last_sigmoid_input(model):
    """The input tensor of the last hidden layer's sigmoid, the unit
    `train` records."""
    last_hidden = f"sigmoid_{HIDDEN_LAYERS}"
    try:
        return model.get_layer(last_hidden).input
    except ValueError:
        raise ValueError(
            f"model: expected a model from build_model(), with a layer "
            f"'{last_hidden}'; got layers {[layer.name for layer in model.layers]}."
        ) from None


def load_split(test_fraction=0.3, seed=0):
    """Loads ``sklearn.datasets.load_digits`` and splits it, stratified.

    Args:
        test_fraction: Share of the samples held out for testing, in (0, 1).
        seed: Seed of the split.

    Returns:
        A `DigitsSplit`; with the defaults, 1,257 training and 540 test
        samples.
    """
    if (
        not isinstance(test_fraction, numbers.Real)
        or isinstance(test_fraction, bool)
        or not 0.0 < test_fraction < 1.0
    ):
        raise ValueError(
            f"test_fraction: expected a number in (0, 1), got {test_fraction!r}."
        )
    seed = _check_seed(seed)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # The pixels are counts from 0 to 16.
    x = (digits.data / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        digits.target,
        test_size=test_fraction,
        stratify=digits.target,
        random_state=seed,
    )
    return DigitsSplit(x_train, y_train, x_test, y_test)


def build_model(batch_normalization=None, seed=0):
    """The paper's network, for 64 inputs and 10 classes.

    Each hidden layer is ``Dense(100)``, then the Batch Normalization if
    there is one, then a sigmoid; the Dense layers are named ``dense_{i}``
    and the sigmoids ``sigmoid_{i}`` (i from 1 to 3). The
    sigmoid's input is a layer's output of its own, so it can be recorded.
    The model is not compiled: `train` compiles it with the experiment's
    optimizer.

    Args:
        batch_normalization: None for the network without Batch
            Normalization, or a callable taking no arguments that returns a
            new Batch Normalization layer: `keras_bn.BatchNormalization`
            itself, or e.g. ``lambda: keras.layers.BatchNormalization(
            epsilon=1e-6, momentum=0.9)`` for the stock layer.
        seed: Seed of the Dense weights. Networks built with one seed start
            from the same Dense kernels, with or without the normalization.

    Returns:
        A `keras.Sequential`, built for inputs of shape ``(batch, 64)``.
    """
    if batch_normalization is not None and not callable(batch_normalization):
        raise TypeError(
            "batch_normalization: expected None or a callable returning a "
            f"layer, got {type(batch_normalization).__name__}."
        )
    seed = _check_seed(seed)

    def kernel_initializer(index):
        return keras.initializers.RandomNormal(
            mean=0.0, stddev=WEIGHT_STDDEV, seed=seed + index
        )

    model = keras.Sequential(name="digits_bn" if batch_normalization else "digits")
    model.add(keras.Input((64,)))
    for i in range(1, HIDDEN_LAYERS + 1):
        model.add(
            keras.layers.Dense(
                HIDDEN_UNITS,
                # The normalization subtracts any bias again; beta replaces it.
                use_bias=batch_normalization is None,
                kernel_initializer=kernel_initializer(i),
                name=f"dense_{i}",
            )
        )
        if batch_normalization is not None:
            layer = batch_normalization()
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(
                    "batch_normalization: expected a callable returning a "
                    f"Keras layer, it returned {type(layer).__name__}."
                )
            model.add(layer)
        model.add(keras.layers.Activation("sigmoid", name=f"sigmoid_{i}"))
    model.add(
        keras.layers.Dense(
            CLASSES,
            activation="softmax",
            kernel_initializer=kernel_initializer(HIDDEN_LAYERS + 1),
            name="output",
        )
    )
    return model


class _Checkpoints(keras.callbacks.Callback):
    """Evaluates the test accuracy (and the recorded unit's percentiles)
    every ``every`` optimizer steps."""

    def __init__(self, probe, split, every, unit, progress, total_steps):
        super().__init__()
        self.probe = probe
        self.x_test = keras.ops.convert_to_tensor(split.x_test)
        self.y_test = split.y_test
        self.every = every
        self.unit = unit
        self.progress = progress
        self.total_steps = total_steps
        self.steps = []
        self.accuracy = []
        self.percentiles = []

    def record(self, step):
        probabilities, preactivation = self.probe(self.x_test, training=False)
        predicted = np.argmax(keras.ops.convert_to_numpy(probabilities), axis=-1)
        self.steps.append(step)
        self.accuracy.append(float(np.mean(predicted == self.y_test)))
        if self.unit is not None:
            unit_input = keras.ops.convert_to_numpy(preactivation)[:, self.unit]
            self.percentiles.append(np.percentile(unit_input, PERCENTILES))
        if self.progress is not None:
            self.progress(step, self.total_steps, self.accuracy[-1])

    def on_train_batch_end(self, batch, logs=None):
        # The optimizer's own count: `batch` counts per `fit` call and, with
        # steps_per_execution, per execution.
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step % self.every == 0 or step == self.total_steps:
            self.record(step)


def train(
    model,
    split,
    steps,
    *,
    seed=0,
    checkpoint_every=21,
    record_unit=None,
    progress=None,
):
    """Trains ``model`` for ``steps`` SGD steps on batches of 60, checking the
    test accuracy every ``checkpoint_every`` steps.

    Each pass over the training set visits every sample once, in a fresh
    random order; the batches run on across passes (1,257 samples make 20.95
    batches of 60), so every step sees 60 samples. The checkpoints run under
    a Keras callback, with the steps between them compiled as one execution
    where the backend allows it.

    Args:
        model: A model from `build_model`. It is compiled here (SGD with
            learning rate 0.5, sparse categorical cross-entropy), so
            training starts with a fresh optimizer.
        split: The `DigitsSplit` to train and test on.
        steps: Number of training steps.
        seed: Seed of the sample order.
        checkpoint_every: Steps between two checkpoints. The default, 21, is
            about one pass over the training set. There is a checkpoint
            before the first step and one after the last.
        record_unit: None, or the index (0 to 99) of the last hidden layer's
            sigmoid whose input's percentiles to record at each checkpoint.
        progress: Optional callable ``progress(step, steps, test_accuracy)``,
            called at each checkpoint.

    Returns:
        A `TrainingRecord`.
    """
    if not isinstance(split, DigitsSplit):
        raise TypeError(
            f"split: expected a DigitsSplit from load_split(), got "
            f"{type(split).__name__}."
        )
    steps = _check_positive_int("steps", steps)
    seed = _check_seed(seed)
    checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
    _check_record_unit(record_unit)
    _check_progress(progress)
    # Looked up before compiling, so that a wrong model is left alone.
    sigmoid_input = _last_sigmoid_input(model)

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        # One compiled execution per checkpoint interval; the torch backend
        # runs one step per execution.
        steps_per_execution=(
            1 if keras.backend.backend() == "torch" else checkpoint_every
        ),
    )
    probe = keras.Model(model.inputs, [model.outputs[0], sigmoid_input])
    checkpoints = _Checkpoints(
        probe, split, checkpoint_every, record_unit, progress, steps
    )
    start = time.perf_counter()
    checkpoints.record(0)
    _fit_steps(model, split, steps, seed, checkpoint_every, checkpoints)
    return TrainingRecord(
        steps=np.asarray(checkpoints.steps),
        test_accuracy=np.asarray(checkpoints.accuracy),
        percentiles=(
            None if record_unit is None else np.asarray(checkpoints.percentiles)
        ),
        seconds=time.perf_counter() - start,
    )


def _fit_steps(model, split, steps, seed, checkpoint_every, checkpoints):
    """Runs ``steps`` training steps of the compiled ``model``, in as few
    `fit` calls as memory allows, with the ``checkpoints`` callback."""
    # Each `fit` call restarts the executions' count: a whole number of
    # checkpoint intervals per call keeps them on the checkpoints.
    steps_per_fit = checkpoint_every * max(1, STEPS_PER_FIT // checkpoint_every)
    order = _sample_order(len(split.x_train), steps * BATCH_SIZE, seed)
    for first in range(0, steps, steps_per_fit):
        rows = order[first * BATCH_SIZE : (first + steps_per_fit) * BATCH_SIZE]
        model.fit(
            split.x_train[rows],
            split.y_train[rows],
            batch_size=BATCH_SIZE,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[checkpoints],
        )


def _sample_order(num_samples, length, seed):
    """``length`` sample indices: shuffled passes over all samples, one after
    another."""
    rng = np.random.default_rng(seed)
    passes = math.ceil(length / num_samples)
    return np.concatenate([rng.permutation(num_samples) for _ in range(passes)])[
        :length
    ]


def compare(
    networks, steps, *, seed=0, checkpoint_every=21, record_unit=0, progress=None
):
    """Builds, trains and tests each network of ``networks`` on one split.

    Args:
        networks: Dict from a label to a ``batch_normalization`` argument of
            `build_model` (None for no normalization).
        steps, seed, checkpoint_every, record_unit: As for `train`; ``seed``
            seeds the Dense weights and the sample order of every network
            alike.
        progress: Optional callable ``progress(label, step, steps,
            test_accuracy)``, called at each checkpoint.

    Returns:
        A dict from each label to its `TrainingRecord`, in the given order.
    """
    if not isinstance(networks, dict) or not networks:
        raise ValueError(
            "networks: expected a non-empty dict from a label to None or a "
            f"Batch Normalization factory, got {networks!r}."
        )
    # Checked here, before the first network trains for minutes.
    for label, batch_normalization in networks.items():
        if batch_normalization is not None and not callable(batch_normalization):
            raise TypeError(
                f"networks: the value for {label!r} must be None or a callable "
                f"returning a layer, got {type(batch_normalization).__name__}."
            )
    _check_progress(progress)
    split = load_split()
    records = {}
    for label, batch_normalization in networks.items():
        report = None
        if progress is not None:

            def report(step, total, accuracy, label=label):
                progress(label, step, total, accuracy)

        records[label] = train(
            build_model(batch_normalization, seed=seed),
            split,
            steps,
            seed=seed,
            checkpoint_every=checkpoint_every,
            record_unit=record_unit,
            progress=report,
        )
    return records
