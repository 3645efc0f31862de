"""Batch Renormalization against Batch Normalization on scikit-learn's digits,
with small and with non-i.i.d. minibatches.

Ioffe, "Batch Renormalization: Towards Reducing Minibatch Dependence in
Batch-Normalized Models" (2017, arXiv:1702.03275), argues that Batch
Normalization suffers when the training minibatches are small or not drawn
independently, because a layer's output in training depends on the whole
minibatch while at inference it does not; Batch Renormalization corrects the
batch statistics towards the running estimates (``r`` and ``d``, clipped to
``[1/rmax, rmax]`` and ``[-dmax, dmax]``, the limits relaxed over training)
so that, within the clipping, training computes the inference output. This
module runs that comparison at a CPU's scale, for
notebooks/04_batch_renormalization: the digits split of the Figure-1
experiment (`figure1.load_split`), a network of 3 hidden ``Dense(100)``
layers with the normalization before each ReLU, and SGD on

- small minibatches (`iid_batches`: shuffled passes, e.g. 4 samples a batch);
- non-i.i.d. minibatches (`non_iid_batches`: each batch from one class, or
  from two, half from each).

The clipping is a constructor argument of `keras_bn.BatchNormalization`
read as a Python dict when the layer is called: a compiled training step
(Keras traces one on TensorFlow and JAX) keeps the values it was traced
with. `train` therefore compiles the model anew whenever `renorm_clipping`
sets new limits (`check_clipping` measures that this is needed). Like
`figure1`, this sits beside the demo, outside the keras_bn package: import
it with this folder on ``sys.path``.
"""

import contextlib
import dataclasses
import logging
import math
import numbers
import time

import keras
import numpy as np

from keras_bn import BatchNormalization

__all__ = [
    "NETWORKS",
    "ClippingCheck",
    "Outcome",
    "TrainingRecord",
    "batch_statistics_accuracy",
    "build_model",
    "check_clipping",
    "compare",
    "inference_accuracy",
    "iid_batches",
    "non_iid_batches",
    "renorm_clipping",
    "renorm_layers",
    "set_renorm_clipping",
    "train",
]

HIDDEN_LAYERS = 3
HIDDEN_UNITS = 100
CLASSES = 10
# The networks compared, by label: no normalization, Batch Normalization,
# and Batch Renormalization (clipping relaxed by `renorm_clipping`).
NETWORKS = ("no BN", "BN", "renorm")
# The clipping schedule: the paper holds rmax = 1, dmax = 0 (plain Batch
# Normalization) for 5k steps, then relaxes them linearly so that dmax
# reaches 5 at 25k steps and rmax reaches 3 at 40k. Here the same
# proportions are scaled to end at RELAX_END of the training.
RMAX = 3.0
DMAX = 5.0
RELAX_END = 0.5
RELAX_START = RELAX_END * 5 / 40
DMAX_END = RELAX_END * 25 / 40


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """What `train` measured.

    Attributes:
        steps: Training steps done at each checkpoint, starting with 0.
        test_accuracy: Test accuracy at each checkpoint, at inference
            (``training=False``: the running estimates).
        clipping: For a network with renorm, the clipping in force over the
            steps that led to each checkpoint after step 0 (one entry fewer
            than ``steps``); None without renorm.
        compiles: How many times the model was compiled (once, plus once per
            change of the clipping).
        seconds: Wall time of the training, checkpoints included.
    """

    steps: np.ndarray
    test_accuracy: np.ndarray
    clipping: list | None
    compiles: int
    seconds: float


def _check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}.")
    return int(value)


def _check_seed(seed):
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}.")
    return int(seed)


# -- minibatches -------------------------------------------------------------


def iid_batches(num_samples, batch_size, steps=None, seed=0):
    """``steps`` minibatches of ``batch_size`` sample indices, as an int array
    of shape ``(steps, batch_size)``: shuffled passes over all
    ``num_samples`` samples, one after another, the batches running on
    across passes (every sample once per pass). ``steps=None``: the fewest
    batches that hold every sample, ``ceil(num_samples / batch_size)``."""
    num_samples = _check_positive_int("num_samples", num_samples)
    batch_size = _check_positive_int("batch_size", batch_size)
    if steps is None:
        steps = math.ceil(num_samples / batch_size)
    steps = _check_positive_int("steps", steps)
    rng = np.random.default_rng(_check_seed(seed))
    length = steps * batch_size
    passes = math.ceil(length / num_samples)
    order = np.concatenate([rng.permutation(num_samples) for _ in range(passes)])
    return order[:length].reshape(steps, batch_size)


def non_iid_batches(labels, batch_size, steps=None, classes_per_batch=2, seed=0):
    """``steps`` minibatches of ``batch_size`` sample indices, each from
    ``classes_per_batch`` classes in equal shares, as an int array of shape
    ``(steps, batch_size)``.

    Each class's samples are drawn in shuffled passes over that class, one
    pass after another. The batches come in rounds: each round shuffles the
    classes and groups them ``classes_per_batch`` at a time (classes left
    over sit the round out), and each group makes one batch of the next
    ``batch_size / classes_per_batch`` samples of each of its classes. So
    every class is drawn at the same pace, and every sample once in each
    pass over its class. ``batch_size`` must be a multiple of
    ``classes_per_batch``, and a class's share no larger than the smallest
    class. ``steps=None``: the fewest whole rounds in which every sample is
    drawn (some twice, where classes differ in size).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(
            f"labels: expected a non-empty 1-D array, got shape {labels.shape}."
        )
    batch_size = _check_positive_int("batch_size", batch_size)
    classes_per_batch = _check_positive_int("classes_per_batch", classes_per_batch)
    classes, counts = np.unique(labels, return_counts=True)
    if classes_per_batch > len(classes):
        raise ValueError(
            f"classes_per_batch: at most the {len(classes)} classes of labels, "
            f"got {classes_per_batch}."
        )
    if batch_size % classes_per_batch:
        raise ValueError(
            f"batch_size: expected a multiple of classes_per_batch "
            f"({classes_per_batch}), got {batch_size}."
        )
    share = batch_size // classes_per_batch
    if share > counts.min():
        raise ValueError(
            f"batch_size: a class's share ({share}) exceeds the smallest "
            f"class's {counts.min()} samples (class {classes[counts.argmin()]})."
        )
    groups = len(classes) // classes_per_batch
    if steps is None:
        steps = groups * math.ceil(counts.max() / share)
    steps = _check_positive_int("steps", steps)
    rng = np.random.default_rng(_check_seed(seed))
    members = [np.flatnonzero(labels == c) for c in classes]
    # Each class's samples in the order they are drawn, extended a pass at
    # a time; the first drawn[c] are used.
    queues = [rng.permutation(m) for m in members]
    drawn = [0] * len(classes)

    def take(c):
        while drawn[c] + share > len(queues[c]):
            queues[c] = np.concatenate([queues[c], rng.permutation(members[c])])
        rows = queues[c][drawn[c] : drawn[c] + share]
        drawn[c] += share
        return rows

    batches = []
    while len(batches) < steps:
        order = rng.permutation(len(classes))
        for group in order[: groups * classes_per_batch].reshape(groups, -1):
            batches.append(np.concatenate([take(c) for c in group]))
    return np.stack(batches[:steps])


# -- the clipping schedule ---------------------------------------------------


def renorm_clipping(step, total_steps):
    """The renorm clipping for training step ``step`` of ``total_steps``:
    ``{"rmax", "rmin", "dmax"}`` with ``rmin = 1 / rmax``.

    rmax = 1 and dmax = 0 (Batch Normalization's output) up to
    ``RELAX_START`` of the training; then dmax grows linearly to 5, reached
    at ``DMAX_END``, and rmax to 3, reached at ``RELAX_END``; then they stay.
    """
    total_steps = _check_positive_int("total_steps", total_steps)
    if not isinstance(step, numbers.Real) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step: expected a non-negative number, got {step!r}.")
    start = RELAX_START * total_steps

    def ramp(end_fraction):
        return min(max((step - start) / (end_fraction * total_steps - start), 0), 1)

    rmax = 1.0 + (RMAX - 1.0) * ramp(RELAX_END)
    return {"rmax": rmax, "rmin": 1.0 / rmax, "dmax": DMAX * ramp(DMAX_END)}


def renorm_layers(model):
    """The `keras_bn.BatchNormalization` layers of ``model`` with renorm on."""
    return [
        layer
        for layer in model.layers
        if isinstance(layer, BatchNormalization) and layer.renorm
    ]


def set_renorm_clipping(model, clipping):
    """Sets ``clipping`` on every renorm layer of ``model``; True if any
    layer's clipping changed. The layers read it when called, so a compiled
    training step that was traced before keeps the old values."""
    changed = False
    for layer in renorm_layers(model):
        if layer.renorm_clipping != clipping:
            layer.renorm_clipping = dict(clipping)
            changed = True
    return changed


# -- the network -------------------------------------------------------------


def build_model(network, *, momentum=0.99, seed=0):
    """The network: 64 inputs, 3 hidden layers of ``Dense(100)``, the
    normalization if any, ReLU, and a softmax over the 10 classes.

    Args:
        network: One of `NETWORKS`: ``"no BN"`` (biases in the Dense layers,
            no normalization), ``"BN"`` (`keras_bn.BatchNormalization`
            before each ReLU, the Dense layers without bias) or
            ``"renorm"`` (the same with ``renorm=True`` and the clipping of
            step 0, rmax = 1 and dmax = 0).
        momentum: The normalization's momentum for the running estimates.
        seed: Seed of the Dense weights (He normal, Glorot uniform for the
            output): networks built with one seed start alike.

    Returns:
        A `keras.Sequential`, not compiled.
    """
    if network not in NETWORKS:
        raise ValueError(f"network: expected one of {NETWORKS}, got {network!r}.")
    seed = _check_seed(seed)
    normalized = network != "no BN"
    model = keras.Sequential(name=network.replace(" ", "_"))
    model.add(keras.Input((64,)))
    for i in range(1, HIDDEN_LAYERS + 1):
        model.add(
            keras.layers.Dense(
                HIDDEN_UNITS,
                use_bias=not normalized,
                kernel_initializer=keras.initializers.HeNormal(seed=seed + i),
                name=f"dense_{i}",
            )
        )
        if network == "BN":
            model.add(BatchNormalization(momentum=momentum, name=f"bn_{i}"))
        elif network == "renorm":
            model.add(
                BatchNormalization(
                    momentum=momentum,
                    renorm=True,
                    renorm_clipping=renorm_clipping(0, 1),
                    name=f"bn_{i}",
                )
            )
        model.add(keras.layers.Activation("relu", name=f"relu_{i}"))
    model.add(
        keras.layers.Dense(
            CLASSES,
            activation="softmax",
            kernel_initializer=keras.initializers.GlorotUniform(
                seed=seed + HIDDEN_LAYERS + 1
            ),
            name="output",
        )
    )
    return model


def _jit_compile():
    """Keras' ``jit_compile`` for the training step: on TensorFlow a traced
    ``tf.function`` without XLA (cheaper to compile anew when the clipping
    changes, and as fast for a network this small); elsewhere Keras' default
    (``jax.jit`` on JAX; PyTorch runs eagerly)."""
    return False if keras.backend.backend() == "tensorflow" else "auto"


# -- accuracy ----------------------------------------------------------------


def inference_accuracy(model, x, y):
    """Accuracy of ``model`` on ``x`` at inference (``training=False``: the
    normalization uses its running estimates; the batching does not
    matter)."""
    probabilities = model(keras.ops.convert_to_tensor(x), training=False)
    predicted = np.argmax(keras.ops.convert_to_numpy(probabilities), axis=-1)
    return float(np.mean(predicted == np.asarray(y)))


def batch_statistics_accuracy(model, x, y, batches):
    """Accuracy of ``model`` on the samples of ``batches`` (rows of indices
    into ``x`` and ``y``), each batch run as in training (``training=True``:
    the normalization uses the batch's statistics, renorm's ``r`` and ``d``
    clipped as the layers say). Runs statelessly: the running estimates are
    left as they were."""
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    correct = 0
    for rows in np.asarray(batches):
        probabilities, _ = model.stateless_call(
            trainable,
            non_trainable,
            keras.ops.convert_to_tensor(x[rows]),
            training=True,
        )
        predicted = np.argmax(keras.ops.convert_to_numpy(probabilities), axis=-1)
        correct += int(np.sum(predicted == np.asarray(y)[rows]))
    return correct / np.asarray(batches).size


# -- training ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClippingCheck:
    """The training losses `check_clipping` measured.

    Attributes:
        clipped: With rmin = rmax = 1 and dmax = 0 (the batch normalized): 1
            up to epsilon.
        changed: After the clipping is lifted on the layer, the same compiled
            step run again: ``clipped`` again if the compiled step kept the
            clipping it was traced with.
        recompiled: After compiling the model anew: the unclipped output's
            loss, about 10.
    """

    clipped: float
    changed: float
    recompiled: float

    @property
    def traced(self):
        """True if a change of the clipping took effect only once the model
        was compiled anew."""
        return bool(
            np.isclose(self.clipped, self.changed)
            and not np.isclose(self.clipped, self.recompiled)
        )


def check_clipping(seed=0):
    """Whether a compiled training step keeps the renorm clipping it was
    traced with, measured.

    A single renorm layer with frozen running estimates (momentum 1: mean 0,
    std 1) is trained with learning rate 0 and the mean of its squared output
    as the loss, on one batch far from those estimates (samples near 3):
    with rmin = rmax = 1 and dmax = 0 the output is the batch normalized
    (loss 1); without clipping it is the inference output, the batch itself
    (loss near 10). One step with the clipping; the clipping lifted on the
    layer and the same step again; then once more after compiling anew.

    Returns:
        A `ClippingCheck`.
    """
    layer = BatchNormalization(
        momentum=1.0,
        renorm=True,
        renorm_clipping={"rmax": 1.0, "rmin": 1.0, "dmax": 0.0},
    )
    model = keras.Sequential([keras.Input((4,)), layer])

    def compile_model():
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.0),
            loss="mean_squared_error",
            jit_compile=_jit_compile(),
        )

    rng = np.random.default_rng(_check_seed(seed))
    x = (3.0 + rng.standard_normal((8, 4))).astype("float32")
    y = np.zeros_like(x)
    compile_model()
    clipped = float(model.train_on_batch(x, y))
    layer.renorm_clipping = {}
    changed = float(model.train_on_batch(x, y))
    compile_model()
    recompiled = float(model.train_on_batch(x, y))
    return ClippingCheck(clipped, changed, recompiled)


class _RetracingWarning(logging.Filter):
    """Drops TensorFlow's warning that a training function is traced often:
    here each stage of the clipping is compiled on purpose."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _deliberate_retracing():
    # TensorFlow logs through the standard logging module; on the other
    # backends the logger stays idle.
    logger = logging.getLogger("tensorflow")
    quiet = _RetracingWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def train(
    model,
    split,
    batches,
    *,
    learning_rate,
    checkpoint_every=100,
    clipping_every=300,
    progress=None,
):
    """Trains ``model`` with SGD, one step per row of ``batches``, checking
    the test accuracy at inference every ``checkpoint_every`` steps.

    For a model with renorm layers, `renorm_clipping` gives the clipping in
    stages of ``clipping_every`` steps: each stage gets the schedule's value
    at its first step, and the model is compiled anew whenever that changes
    the clipping (a compiled step keeps the clipping it was traced with; see
    `check_clipping`). The optimizer carries over. The steps between two
    checkpoints run as one compiled execution.

    Args:
        model: A model from `build_model`; compiled here (SGD, sparse
            categorical cross-entropy).
        split: A `figure1.DigitsSplit`.
        batches: Int array ``(steps, batch_size)`` of training-set indices,
            from `iid_batches` or `non_iid_batches`.
        learning_rate: SGD's learning rate.
        checkpoint_every: Steps between two checkpoints; there is one before
            the first step and one after the last.
        clipping_every: Steps per stage of the clipping schedule: a multiple
            of ``checkpoint_every``.
        progress: Optional callable ``progress(step, steps, test_accuracy)``.

    Returns:
        A `TrainingRecord`.
    """
    batches = np.asarray(batches)
    if batches.ndim != 2 or batches.shape[0] == 0:
        raise ValueError(
            f"batches: expected an int array (steps, batch_size), got shape "
            f"{batches.shape}."
        )
    checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
    clipping_every = _check_positive_int("clipping_every", clipping_every)
    if clipping_every % checkpoint_every:
        raise ValueError(
            f"clipping_every: expected a multiple of checkpoint_every "
            f"({checkpoint_every}), got {clipping_every}."
        )
    if progress is not None and not callable(progress):
        raise TypeError(
            f"progress: expected None or a callable, got {type(progress).__name__}."
        )
    total, batch_size = batches.shape
    renorm = bool(renorm_layers(model))
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate)

    def compile_model():
        model.compile(
            optimizer=optimizer,
            loss="sparse_categorical_crossentropy",
            # One compiled execution per checkpoint interval; the torch
            # backend runs one step per execution.
            steps_per_execution=(
                1 if keras.backend.backend() == "torch" else checkpoint_every
            ),
            jit_compile=_jit_compile(),
        )

    start = time.perf_counter()
    if renorm:
        set_renorm_clipping(model, renorm_clipping(0, total))
    compile_model()
    compiles = 1
    steps = [0]
    accuracy = [inference_accuracy(model, split.x_test, split.y_test)]
    clipping = [] if renorm else None
    with _deliberate_retracing():
        for first in range(0, total, checkpoint_every):
            last = min(first + checkpoint_every, total)
            if renorm:
                if first % clipping_every == 0 and set_renorm_clipping(
                    model, renorm_clipping(first, total)
                ):
                    compile_model()
                    compiles += 1
                clipping.append(dict(renorm_layers(model)[0].renorm_clipping))
            rows = batches[first:last].reshape(-1)
            model.fit(
                split.x_train[rows],
                split.y_train[rows],
                batch_size=batch_size,
                epochs=1,
                shuffle=False,
                verbose=0,
            )
            steps.append(last)
            accuracy.append(inference_accuracy(model, split.x_test, split.y_test))
            if progress is not None:
                progress(last, total, accuracy[-1])
    return TrainingRecord(
        steps=np.asarray(steps),
        test_accuracy=np.asarray(accuracy),
        clipping=clipping,
        compiles=compiles,
        seconds=time.perf_counter() - start,
    )


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One trained network of `compare`.

    Attributes:
        model: The trained model.
        record: Its `TrainingRecord`.
        inference_accuracy: Test accuracy at inference (running estimates),
            on the samples of the test batches.
        batch_accuracy: Test accuracy with batch statistics, the test
            batches run as in training (`batch_statistics_accuracy`).
    """

    model: keras.Model
    record: TrainingRecord
    inference_accuracy: float
    batch_accuracy: float

    @property
    def gap(self):
        """Inference accuracy minus batch-statistics accuracy."""
        return self.inference_accuracy - self.batch_accuracy


def compare(
    split,
    train_batches,
    test_batches,
    *,
    learning_rate,
    momentum=0.99,
    checkpoint_every=100,
    clipping_every=300,
    seed=0,
    progress=None,
):
    """Builds and trains each of `NETWORKS` from the same initial weights
    (``seed``) on the same minibatches, then measures each one's accuracy on
    the test minibatches at inference and with batch statistics.

    Args:
        split: A `figure1.DigitsSplit`.
        train_batches, test_batches: Int arrays ``(steps, batch_size)`` of
            indices into the training and the test set.
        learning_rate, checkpoint_every, clipping_every: As for `train`.
        momentum: As for `build_model`.
        seed: Seed of the Dense weights.
        progress: Optional callable ``progress(network, step, steps,
            test_accuracy)``.

    Returns:
        A dict from each network's label to its `Outcome`, in `NETWORKS`'
        order.
    """
    test_batches = np.asarray(test_batches)
    test_rows = test_batches.reshape(-1)
    outcomes = {}
    for network in NETWORKS:
        model = build_model(network, momentum=momentum, seed=seed)
        report = None
        if progress is not None:

            def report(step, total, accuracy, network=network):
                progress(network, step, total, accuracy)

        record = train(
            model,
            split,
            train_batches,
            learning_rate=learning_rate,
            checkpoint_every=checkpoint_every,
            clipping_every=clipping_every,
            progress=report,
        )
        outcomes[network] = Outcome(
            model=model,
            record=record,
            inference_accuracy=inference_accuracy(
                model, split.x_test[test_rows], split.y_test[test_rows]
            ),
            batch_accuracy=batch_statistics_accuracy(
                model, split.x_test, split.y_test, test_batches
            ),
        )
    return outcomes
