"""scripts/renorm_experiment.py (the Batch Renormalization experiment of
notebooks/04_batch_renormalization): its minibatch samplers, the clipping
schedule, the networks, the accuracy measures and a few training steps."""

import os
import sys

import keras
import numpy as np
import pytest
from conftest import BACKEND

from keras_bn import BatchNormalization

pytest.importorskip("sklearn.datasets")

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The experiment sits beside the demo, outside the installed package.
sys.path.insert(0, os.path.join(REPOSITORY, "scripts"))
import figure1  # noqa: E402
import renorm_experiment as rx  # noqa: E402


@pytest.fixture(scope="module")
def split():
    return figure1.load_split()


def unbalanced_labels():
    # Three classes of 5, 6 and 7 samples, interleaved.
    return np.array([0, 1, 2] * 5 + [1, 2, 2])


# -- iid_batches --------------------------------------------------------------


def test_iid_batches_visit_every_sample_once_per_pass():
    batches = rx.iid_batches(10, 4, 7, seed=3)
    assert batches.shape == (7, 4)
    order = batches.reshape(-1)
    # 28 indices: two whole passes, then the start of a third.
    for first in (0, 10):
        assert sorted(order[first : first + 10]) == list(range(10))
    assert len(set(order[20:])) == 8


def test_iid_batches_without_steps_hold_every_sample():
    batches = rx.iid_batches(10, 4)
    assert batches.shape == (3, 4)
    assert set(batches.reshape(-1)) == set(range(10))


def test_iid_batches_are_seeded():
    assert np.array_equal(rx.iid_batches(10, 2, 9), rx.iid_batches(10, 2, 9))
    assert not np.array_equal(
        rx.iid_batches(10, 2, 9, seed=0), rx.iid_batches(10, 2, 9, seed=1)
    )


# -- non_iid_batches ----------------------------------------------------------


@pytest.mark.parametrize("classes_per_batch", [1, 2])
def test_non_iid_batches_hold_equal_shares_of_their_classes(classes_per_batch):
    labels = unbalanced_labels()
    batches = rx.non_iid_batches(labels, 4, 30, classes_per_batch, seed=1)
    assert batches.shape == (30, 4)
    for batch in batches:
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == classes_per_batch
        assert set(counts) == {4 // classes_per_batch}


@pytest.mark.parametrize("classes_per_batch, rounds", [(1, 4), (2, 7)])
def test_non_iid_batches_without_steps_cover_the_digits(
    split, classes_per_batch, rounds
):
    batches = rx.non_iid_batches(
        split.y_test, 16, classes_per_batch=classes_per_batch, seed=1
    )
    # Whole rounds of 10 / classes_per_batch batches, each drawing 16 /
    # classes_per_batch samples of every class, until the largest class (55
    # samples) is drawn whole.
    assert batches.shape == (rounds * 10 // classes_per_batch, 16)
    assert {len(np.unique(split.y_test[batch])) for batch in batches} == {
        classes_per_batch
    }
    assert set(batches.reshape(-1)) == set(range(len(split.y_test)))
    fewer = rx.non_iid_batches(
        split.y_test,
        16,
        len(batches) - 10 // classes_per_batch,
        classes_per_batch,
        seed=1,
    )
    assert set(fewer.reshape(-1)) != set(range(len(split.y_test)))


@pytest.mark.parametrize("classes_per_batch", [1, 2])
def test_non_iid_batches_draw_each_class_in_passes(classes_per_batch):
    labels = unbalanced_labels()
    batches = rx.non_iid_batches(labels, 2, 40, classes_per_batch, seed=2)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        drawn = [i for i in batches.reshape(-1) if labels[i] == c]
        assert len(drawn) >= 2 * len(members)
        # Every sample once per pass over its class.
        for first in (0, len(members)):
            assert sorted(drawn[first : first + len(members)]) == list(members)


def test_non_iid_batches_draw_the_classes_at_one_pace():
    labels = np.repeat(np.arange(10), 20)
    batches = rx.non_iid_batches(labels, 4, 50, seed=0)
    # 10 rounds of 5 batches: 2 samples of each class per round.
    counts = np.bincount(labels[batches.reshape(-1)], minlength=10)
    assert list(counts) == [20] * 10


def test_non_iid_batches_are_seeded():
    labels = unbalanced_labels()
    assert np.array_equal(
        rx.non_iid_batches(labels, 2, 9), rx.non_iid_batches(labels, 2, 9)
    )
    assert not np.array_equal(
        rx.non_iid_batches(labels, 2, 9, seed=0),
        rx.non_iid_batches(labels, 2, 9, seed=1),
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=3), "multiple of classes_per_batch"),
        (dict(batch_size=12), "smallest class"),
        (dict(classes_per_batch=4), "at most the 3 classes"),
        (dict(classes_per_batch=0), "positive int"),
        (dict(steps=0), "positive int"),
        (dict(labels=np.zeros((2, 3))), "1-D"),
    ],
)
def test_non_iid_batches_reject_bad_arguments(kwargs, message):
    arguments = dict(labels=unbalanced_labels(), batch_size=4, steps=5)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        rx.non_iid_batches(**arguments)


# -- the clipping schedule ----------------------------------------------------


def test_renorm_clipping_relaxes_from_batch_normalization_to_3_and_5():
    total = 1600
    assert rx.renorm_clipping(0, total) == {"rmax": 1.0, "rmin": 1.0, "dmax": 0.0}
    # Held until RELAX_START (the paper's 5k of 40k steps, scaled).
    assert rx.renorm_clipping(rx.RELAX_START * total, total)["rmax"] == 1.0
    end = rx.renorm_clipping(total, total)
    assert end == pytest.approx({"rmax": 3.0, "rmin": 1 / 3, "dmax": 5.0})
    # dmax is fully relaxed first, at DMAX_END; rmax at RELAX_END.
    assert rx.renorm_clipping(rx.DMAX_END * total, total)["dmax"] == 5.0
    assert rx.renorm_clipping(rx.DMAX_END * total, total)["rmax"] < 3.0
    assert rx.renorm_clipping(rx.RELAX_END * total, total)["rmax"] == 3.0
    schedule = [rx.renorm_clipping(step, total) for step in range(total + 1)]
    for key in ("rmax", "dmax"):
        values = [clipping[key] for clipping in schedule]
        assert np.all(np.diff(values) >= 0)
    assert all(c["rmin"] == pytest.approx(1 / c["rmax"]) for c in schedule)


def test_renorm_clipping_rejects_bad_steps():
    with pytest.raises(ValueError, match="step"):
        rx.renorm_clipping(-1, 10)
    with pytest.raises(ValueError, match="total_steps"):
        rx.renorm_clipping(0, 0)


# -- the networks -------------------------------------------------------------


@pytest.mark.parametrize("network", rx.NETWORKS)
def test_build_model_puts_the_normalization_before_each_relu(network):
    model = rx.build_model(network, momentum=0.9)
    kinds = [type(layer).__name__ for layer in model.layers]
    hidden = ["Dense", "Activation"]
    if network != "no BN":
        hidden = ["Dense", "BatchNormalization", "Activation"]
    assert kinds == hidden * 3 + ["Dense"]
    normalizations = [
        layer for layer in model.layers if isinstance(layer, BatchNormalization)
    ]
    assert all(layer.momentum == 0.9 for layer in normalizations)
    assert [layer.renorm for layer in normalizations] == [network == "renorm"] * len(
        normalizations
    )
    assert rx.renorm_layers(model) == (normalizations if network == "renorm" else [])
    for layer in rx.renorm_layers(model):
        assert layer.renorm_clipping == rx.renorm_clipping(0, 1)
    # No bias where the normalization's beta takes its place.
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.use_bias for layer in dense] == [network == "no BN"] * 3 + [True]


def test_build_model_seed_gives_the_same_start():
    first = rx.build_model("BN", seed=4).get_layer("dense_2").get_weights()[0]
    again = rx.build_model("renorm", seed=4).get_layer("dense_2").get_weights()[0]
    other = rx.build_model("BN", seed=5).get_layer("dense_2").get_weights()[0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_build_model_rejects_unknown_networks():
    with pytest.raises(ValueError, match="network"):
        rx.build_model("batch norm")


def test_set_renorm_clipping_reports_a_change():
    model = rx.build_model("renorm")
    relaxed = {"rmax": 2.0, "rmin": 0.5, "dmax": 1.0}
    assert rx.set_renorm_clipping(model, relaxed)
    assert all(layer.renorm_clipping == relaxed for layer in rx.renorm_layers(model))
    assert not rx.set_renorm_clipping(model, dict(relaxed))
    assert not rx.set_renorm_clipping(rx.build_model("BN"), relaxed)


# -- accuracy -----------------------------------------------------------------


def running_estimates(model):
    return [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]


def test_batch_statistics_accuracy_runs_the_batches_as_in_training(split):
    model = rx.build_model("BN")
    batches = rx.iid_batches(len(split.x_test), 4, 10, seed=0)
    before = running_estimates(model)
    accuracy = rx.batch_statistics_accuracy(model, split.x_test, split.y_test, batches)
    # Statelessly: the running estimates are left as they were.
    for old, new in zip(before, running_estimates(model)):
        assert np.array_equal(old, new)
    correct = 0
    for rows in batches:
        probabilities = model(split.x_test[rows], training=True)
        predicted = np.argmax(keras.ops.convert_to_numpy(probabilities), axis=-1)
        correct += np.sum(predicted == split.y_test[rows])
    assert accuracy == correct / batches.size


def test_without_normalization_both_accuracies_agree(split):
    model = rx.build_model("no BN")
    batches = rx.iid_batches(len(split.x_test), 4, 10, seed=0)
    rows = batches.reshape(-1)
    assert rx.inference_accuracy(
        model, split.x_test[rows], split.y_test[rows]
    ) == rx.batch_statistics_accuracy(model, split.x_test, split.y_test, batches)


# -- training -----------------------------------------------------------------


def test_check_clipping_measures_whether_the_step_keeps_its_clipping():
    check = rx.check_clipping()
    # Batch normalized: a mean square of 1; the inference output, the batch
    # (samples near 3): near 10.
    assert check.clipped == pytest.approx(1.0, abs=1e-3)
    assert check.recompiled > 5.0
    if BACKEND == "torch":
        # Keras runs PyTorch's training step eagerly (no jit_compile): the
        # layer reads the new clipping at once.
        assert check.changed == pytest.approx(check.recompiled)
        assert not check.traced
    else:
        assert check.changed == pytest.approx(check.clipped)
        assert check.traced


@pytest.mark.slow  # a training run
def test_train_relaxes_the_clipping_in_stages(split):
    model = rx.build_model("renorm")
    batches = rx.iid_batches(len(split.x_train), 4, 16, seed=0)
    record = rx.train(
        model,
        split,
        batches,
        learning_rate=0.05,
        checkpoint_every=2,
        clipping_every=4,
    )
    assert list(record.steps) == list(range(0, 17, 2))
    assert record.test_accuracy.shape == (9,)
    assert np.all((record.test_accuracy >= 0) & (record.test_accuracy <= 1))
    # The schedule's value at the first step of each stage of 4 steps.
    expected = [rx.renorm_clipping(first - first % 4, 16) for first in range(0, 16, 2)]
    assert record.clipping == expected
    # Compiled once, then once per stage that changed the clipping: at steps
    # 4 and 8 (step 0 holds rmax = 1, dmax = 0; from step 8, the half of the
    # training, it is rmax = 3, dmax = 5).
    assert rx.renorm_clipping(8, 16) == rx.renorm_clipping(12, 16)
    assert record.compiles == 3
    final = rx.renorm_layers(model)[0].renorm_clipping
    assert final == rx.renorm_clipping(12, 16)
    # The optimizer carried over the compiles: one iteration per step.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 16


def test_train_without_renorm_compiles_once(split):
    batches = rx.iid_batches(len(split.x_train), 4, 6, seed=0)
    record = rx.train(
        rx.build_model("BN"), split, batches, learning_rate=0.05, checkpoint_every=3
    )
    assert list(record.steps) == [0, 3, 6]
    assert record.clipping is None
    assert record.compiles == 1


@pytest.mark.slow  # a training run
def test_train_is_reproducible(split):
    batches = rx.iid_batches(len(split.x_train), 4, 6, seed=0)

    def run():
        record = rx.train(
            rx.build_model("renorm", seed=1),
            split,
            batches,
            learning_rate=0.05,
            checkpoint_every=3,
            clipping_every=3,
        )
        return record.test_accuracy

    assert np.array_equal(run(), run())


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(batches=np.zeros(4, int)), ValueError, "batches"),
        (dict(checkpoint_every=0), ValueError, "checkpoint_every"),
        (dict(clipping_every=5), ValueError, "multiple of checkpoint_every"),
        (dict(progress=1), TypeError, "progress"),
    ],
)
def test_train_rejects_bad_arguments(split, kwargs, error, message):
    arguments = dict(
        batches=np.zeros((4, 2), int),
        learning_rate=0.05,
        checkpoint_every=2,
        clipping_every=4,
    )
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        rx.train(rx.build_model("renorm"), split, **arguments)


@pytest.mark.slow  # a training run
def test_compare_trains_every_network_on_the_same_batches(split):
    train_batches = rx.non_iid_batches(split.y_train, 4, 6, seed=0)
    test_batches = rx.non_iid_batches(split.y_test, 4, 5, seed=1)
    seen = []

    def progress(network, step, total, accuracy):
        seen.append((network, step, total))

    outcomes = rx.compare(
        split,
        train_batches,
        test_batches,
        learning_rate=0.05,
        checkpoint_every=3,
        clipping_every=3,
        progress=progress,
    )
    assert list(outcomes) == list(rx.NETWORKS)
    assert seen == [(n, s, 6) for n in rx.NETWORKS for s in (3, 6)]
    rows = test_batches.reshape(-1)
    for outcome in outcomes.values():
        assert outcome.inference_accuracy == rx.inference_accuracy(
            outcome.model, split.x_test[rows], split.y_test[rows]
        )
        assert outcome.gap == pytest.approx(
            outcome.inference_accuracy - outcome.batch_accuracy
        )
    no_bn = outcomes["no BN"]
    assert no_bn.gap == 0
