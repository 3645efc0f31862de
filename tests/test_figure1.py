"""scripts/figure1.py and figure1_plot.py (the Figure-1 experiment) and
scripts/demo.py.

Expected values come from scikit-learn's data itself, from a NumPy forward
pass over the trained weights (with the seed formulas of tests/reference.py),
and from Keras' stock BatchNormalization; training runs a few dozen steps.
"""

import importlib.util
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import BACKEND
from reference import seed_featurewise, variance_form

from keras_bn import BatchNormalization

sklearn_datasets = pytest.importorskip("sklearn.datasets")
pytest.importorskip("matplotlib")

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPOSITORY, "scripts")
DEMO = os.path.join(SCRIPTS, "demo.py")
# The experiment sits beside the demo, outside the installed package.
sys.path.insert(0, SCRIPTS)
import figure1  # noqa: E402
from figure1_plot import plot_figure1  # noqa: E402
from native_log import is_start_up_chatter, quiet_native_log  # noqa: E402


def stock_batch_normalization():
    return keras.layers.BatchNormalization(epsilon=1e-6, momentum=0.9)


FACTORIES = {
    "none": None,
    "keras_bn": BatchNormalization,
    "stock": stock_batch_normalization,
}


@pytest.fixture
def split():
    return figure1.load_split()


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_forward(model, x):
    """Logits and the last sigmoid's input, in float64, from the weights."""
    h = np.asarray(x, dtype="float64")
    sigmoid_input = None
    for layer in model.layers:
        weights = [np.asarray(w, dtype="float64") for w in layer.get_weights()]
        if isinstance(layer, keras.layers.Dense):
            h = h @ weights[0] + (weights[1] if len(weights) == 2 else 0.0)
        elif isinstance(layer, BatchNormalization):
            h = seed_featurewise(h, *weights, layer.epsilon)
        elif isinstance(layer, keras.layers.BatchNormalization):
            h = variance_form(h, *weights, layer.epsilon)
        else:
            assert layer.name.startswith("sigmoid_"), layer.name
            sigmoid_input = h
            h = sigmoid(h)
    return h, sigmoid_input


def expected_checkpoint(model, split, unit):
    logits, sigmoid_input = numpy_forward(model, split.x_test)
    accuracy = np.mean(np.argmax(logits, axis=-1) == split.y_test)
    return accuracy, np.percentile(sigmoid_input[:, unit], [15, 50, 85])


def assert_accuracy_close(actual, expected):
    # float32 against float64: a near tie may flip one prediction.
    assert abs(actual - expected) <= 1.5 / 540, (actual, expected)


# -- the data ---------------------------------------------------------------


def test_load_split_is_a_stratified_70_30_split_of_the_scaled_digits(split):
    data = sklearn_datasets.load_digits()
    assert split.x_train.shape == (1257, 64) and split.x_test.shape == (540, 64)
    assert split.x_train.dtype == np.float32
    # Together, the two parts are the data set, pixels divided by 16.
    rows = np.concatenate([split.x_train, split.x_test])
    labels = np.concatenate([split.y_train, split.y_test])
    expected = np.column_stack([data.data / 16.0, data.target])
    got = np.column_stack([rows, labels])
    np.testing.assert_allclose(
        got[np.lexsort(got.T)], expected[np.lexsort(expected.T)], rtol=1e-7
    )
    # Each class is split 70/30, to within one sample.
    for label in range(10):
        total = np.sum(data.target == label)
        assert abs(np.sum(split.y_test == label) - 0.3 * total) <= 1


def test_load_split_seed_picks_the_split(split):
    np.testing.assert_array_equal(figure1.load_split(seed=0).y_test, split.y_test)
    assert not np.array_equal(figure1.load_split(seed=1).y_test, split.y_test)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(test_fraction=0), "test_fraction"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(test_fraction="0.3"), "test_fraction"),
        (dict(test_fraction=True), "test_fraction"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_load_split_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        figure1.load_split(**kwargs)


# -- the network ------------------------------------------------------------


@pytest.mark.parametrize("factory", FACTORIES)
def test_build_model_is_the_papers_network(factory):
    model = figure1.build_model(FACTORIES[factory], seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    hidden = (
        ["Dense", "Activation"]
        if factory == "none"
        else ["Dense", "BatchNormalization", "Activation"]
    )
    assert kinds == hidden * 3 + ["Dense"]
    assert model.output_shape == (None, 10)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    # A bias only where no normalization follows (and in the output layer).
    assert [layer.use_bias for layer in dense] == [factory == "none"] * 3 + [True]
    assert [layer.units for layer in dense] == [100, 100, 100, 10]
    assert dense[-1].activation is keras.activations.softmax
    for layer in model.layers:
        if isinstance(layer, keras.layers.Activation):
            assert layer.activation is keras.activations.sigmoid
    # N(0, 0.05): 6,400 to 10,000 draws per kernel.
    for layer in dense[:3]:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        assert abs(kernel.mean()) < 0.003
        assert abs(kernel.std() - 0.05) < 0.002


def test_build_model_seed_gives_the_same_start_with_and_without_normalization():
    def kernels(model):
        return [
            keras.ops.convert_to_numpy(layer.kernel)
            for layer in model.layers
            if isinstance(layer, keras.layers.Dense)
        ]

    plain = kernels(figure1.build_model(None, seed=5))
    normalized = kernels(figure1.build_model(BatchNormalization, seed=5))
    other = kernels(figure1.build_model(None, seed=6))
    for a, b, c in zip(plain, normalized, other):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


@pytest.mark.parametrize(
    "factory, error",
    [(5, TypeError), (lambda: "not a layer", TypeError)],
)
def test_build_model_rejects_bad_factories(factory, error):
    with pytest.raises(error, match="batch_normalization"):
        figure1.build_model(factory)


# -- training ---------------------------------------------------------------


@pytest.mark.parametrize("factory", FACTORIES)
def test_train_checkpoints_match_a_numpy_forward_pass(split, factory):
    untrained = figure1.build_model(FACTORIES[factory], seed=2)
    start_accuracy, start_percentiles = expected_checkpoint(untrained, split, 7)

    model = figure1.build_model(FACTORIES[factory], seed=2)
    record = figure1.train(model, split, 45, seed=2, checkpoint_every=10, record_unit=7)

    np.testing.assert_array_equal(record.steps, [0, 10, 20, 30, 40, 45])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 45
    assert record.percentiles.shape == (6, 3)
    assert record.seconds > 0
    end_accuracy, end_percentiles = expected_checkpoint(model, split, 7)
    assert_accuracy_close(record.test_accuracy[0], start_accuracy)
    assert_accuracy_close(record.test_accuracy[-1], end_accuracy)
    np.testing.assert_allclose(record.percentiles[0], start_percentiles, atol=1e-4)
    np.testing.assert_allclose(record.percentiles[-1], end_percentiles, atol=1e-4)


def test_train_without_record_unit_records_no_percentiles(split):
    record = figure1.train(figure1.build_model(), split, 5, checkpoint_every=5)
    assert record.percentiles is None
    np.testing.assert_array_equal(record.steps, [0, 5])


def test_train_calls_progress_at_each_checkpoint(split):
    calls = []
    record = figure1.train(
        figure1.build_model(BatchNormalization),
        split,
        12,
        checkpoint_every=5,
        progress=lambda *args: calls.append(args),
    )
    assert [(step, total) for step, total, _ in calls] == [
        (0, 12),
        (5, 12),
        (10, 12),
        (12, 12),
    ]
    np.testing.assert_array_equal([c[2] for c in calls], record.test_accuracy)


@pytest.mark.slow  # a training run
def test_train_is_reproducible_and_seeded(split):
    def run(seed):
        model = figure1.build_model(BatchNormalization, seed=1)
        return figure1.train(model, split, 10, seed=seed, checkpoint_every=5)

    first, again, other = run(0), run(0), run(1)
    np.testing.assert_array_equal(first.test_accuracy, again.test_accuracy)
    # The seed orders the samples: another order, another network.
    assert not np.array_equal(first.test_accuracy, other.test_accuracy)


def test_sample_order_visits_every_sample_once_per_pass():
    order = figure1._sample_order(10, 25, seed=0)
    assert len(order) == 25
    assert sorted(order[:10]) == list(range(10))
    assert sorted(order[10:20]) == list(range(10))
    assert len(set(order[20:])) == 5
    assert not np.array_equal(order[:10], order[10:20])


@pytest.mark.slow
def test_keras_bn_trains_like_the_stock_layer(split):
    # In training both layers normalize with the batch statistics, and with
    # epsilon 1e-6 their formulas differ by about 1e-6 in the denominator:
    # from one start and one sample order, the same weights. At inference they
    # differ while the running estimates still remember their start (a std of
    # 1 against a variance of 1); after 105 steps that start weighs 0.9**105.
    models, records = {}, {}
    for name in ("keras_bn", "stock"):
        models[name] = figure1.build_model(FACTORIES[name], seed=0)
        records[name] = figure1.train(
            models[name], split, 105, checkpoint_every=105, record_unit=0
        )
    for ours, stock in zip(models["keras_bn"].layers, models["stock"].layers):
        # Dense kernels and biases; gamma and beta (the running estimates
        # differ in kind: a std against a variance).
        for got, want in zip(ours.trainable_weights, stock.trainable_weights):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(got),
                keras.ops.convert_to_numpy(want),
                atol=1e-3,
            )
    assert_accuracy_close(
        records["keras_bn"].test_accuracy[-1], records["stock"].test_accuracy[-1]
    )
    np.testing.assert_allclose(
        records["keras_bn"].percentiles[-1], records["stock"].percentiles[-1], atol=0.05
    )


@pytest.mark.slow
def test_batch_normalization_learns_faster(split):
    # The experiment's point, at its start: docs/semantics.md records 95% after
    # 84 steps with the normalization, while the plain network is still at
    # chance level for thousands of steps.
    plain = figure1.train(figure1.build_model(None), split, 105)
    normalized = figure1.train(figure1.build_model(BatchNormalization), split, 105)
    assert normalized.test_accuracy[-1] >= 0.9
    assert plain.test_accuracy[-1] <= 0.2


def model_without_last_sigmoid():
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=2.5), ValueError, "steps"),
        (dict(steps=True), ValueError, "steps"),
        (dict(seed=-3), ValueError, "seed"),
        (dict(checkpoint_every=0), ValueError, "checkpoint_every"),
        (dict(record_unit=100), ValueError, "record_unit"),
        (dict(record_unit=-1), ValueError, "record_unit"),
        (dict(progress="print"), TypeError, "progress"),
        (dict(split=(1, 2, 3, 4)), TypeError, "split"),
        (dict(model=model_without_last_sigmoid), ValueError, "sigmoid_3"),
    ],
)
def test_train_rejects_bad_arguments_and_leaves_the_model_alone(
    split, kwargs, error, message
):
    kwargs = dict(kwargs)
    model = kwargs.pop("model", figure1.build_model)()
    before = [np.array(w) for w in model.get_weights()]
    arguments = dict(model=model, split=split, steps=5) | kwargs
    with pytest.raises(error, match=message):
        figure1.train(**arguments)
    assert not model.compiled
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_steps_to_reach_is_the_first_checkpoint_at_the_target():
    record = figure1.TrainingRecord(
        steps=np.array([0, 21, 42, 63]),
        test_accuracy=np.array([0.1, 0.96, 0.94, 0.97]),
        percentiles=None,
        seconds=1.0,
    )
    assert record.steps_to_reach(0.95) == 21
    assert record.steps_to_reach(0.97) == 63
    assert record.steps_to_reach(0.99) is None


# -- compare and the figure ---------------------------------------------------


@pytest.mark.slow
def test_compare_trains_each_network_from_one_start(split):
    calls = []
    records = figure1.compare(
        {"plain": None, "bn": BatchNormalization},
        6,
        seed=4,
        checkpoint_every=3,
        record_unit=3,
        progress=lambda *args: calls.append(args[:3]),
    )
    assert list(records) == ["plain", "bn"]
    assert calls == [
        (label, step, 6) for label in ("plain", "bn") for step in (0, 3, 6)
    ]
    # Before training, the normalization is close to the identity (running
    # mean 0, std 1): both networks see the same sigmoid input.
    np.testing.assert_allclose(
        records["plain"].percentiles[0], records["bn"].percentiles[0], atol=1e-4
    )
    model = figure1.build_model(None, seed=4)
    _, expected_percentiles = expected_checkpoint(model, split, 3)
    np.testing.assert_allclose(
        records["plain"].percentiles[0], expected_percentiles, atol=1e-4
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(networks={}), ValueError, "networks"),
        (dict(networks=[None]), ValueError, "networks"),
        (dict(networks=None), ValueError, "networks"),
        (dict(networks={"plain": None, "bn": "keras_bn"}), TypeError, "'bn'"),
        (dict(steps=0), ValueError, "steps"),
        (dict(progress="print"), TypeError, "progress"),
    ],
)
def test_compare_rejects_bad_arguments(kwargs, error, message):
    arguments = dict(networks={"plain": None}, steps=5) | kwargs
    with pytest.raises(error, match=message):
        figure1.compare(**arguments)


def make_record(steps, accuracy, percentiles):
    return figure1.TrainingRecord(
        steps=np.asarray(steps),
        test_accuracy=np.asarray(accuracy),
        percentiles=None if percentiles is None else np.asarray(percentiles),
        seconds=0.0,
    )


def test_plot_figure1_draws_accuracy_and_percentile_panels(tmp_path):
    import matplotlib.image

    steps = [0, 21, 42]
    records = {
        "without BN": make_record(steps, [0.1, 0.2, 0.3], [[-1, 0, 1]] * 3),
        "with BN": make_record(steps, [0.1, 0.9, 0.97], [[-2, 0, 2]] * 3),
        "stock": make_record(steps, [0.1, 0.8, 0.96], None),
    }
    path = tmp_path / "figure.png"
    figure = plot_figure1(records, path)

    accuracy_axes, *percentile_axes = figure.axes
    assert len(percentile_axes) == 2
    lines = accuracy_axes.get_lines()
    # One line per record (without step 0, on the log axis), then the target.
    for line, record in zip(lines, records.values()):
        np.testing.assert_array_equal(line.get_xdata(), record.steps[1:])
        np.testing.assert_array_equal(line.get_ydata(), record.test_accuracy[1:])
    assert list(lines[-1].get_ydata()) == [0.95, 0.95]
    assert accuracy_axes.get_xscale() == "log"
    assert [ax.get_title() for ax in percentile_axes] == [
        "(b) without BN",
        "(c) with BN",
    ]
    np.testing.assert_array_equal(
        [line.get_ydata()[0] for line in percentile_axes[1].get_lines()], [-2, 0, 2]
    )
    assert percentile_axes[0].get_ylim() == percentile_axes[1].get_ylim()
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (360, 1260)


def test_plot_figure1_draws_overlaid_records_dashed_on_top():
    steps = [0, 21, 42]
    records = {
        "with BN": make_record(steps, [0.1, 0.9, 0.97], None),
        "stock": make_record(steps, [0.1, 0.9, 0.97], None),
    }
    ours, stock = plot_figure1(records, overlaid=["stock"]).axes[0].get_lines()[:2]
    # Two coinciding curves: the dashed one on top, the other showing around it.
    assert stock.get_linestyle() == "--" and ours.get_linestyle() == "-"
    assert stock.get_zorder() > ours.get_zorder()
    assert ours.get_linewidth() > stock.get_linewidth()


@pytest.mark.parametrize(
    "records, error",
    [({}, ValueError), ([1], ValueError), ({"a": (1, 2)}, TypeError)],
)
def test_plot_figure1_rejects_bad_records(records, error):
    with pytest.raises(error, match="records"):
        plot_figure1(records)


@pytest.mark.parametrize("overlaid", [["other"], "with BN"])
def test_plot_figure1_rejects_overlaid_labels_not_in_records(overlaid):
    records = {"with BN": make_record([0, 21], [0.1, 0.9], None)}
    with pytest.raises(ValueError, match="overlaid"):
        plot_figure1(records, overlaid=overlaid)


# -- scripts/demo.py ----------------------------------------------------------


def run_demo(*arguments, cwd, backend=BACKEND, python_path=None):
    env = {**os.environ, "KERAS_BACKEND": backend}
    if python_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(python_path), os.environ.get("PYTHONPATH")])
        )
    return subprocess.run(
        [sys.executable, DEMO, *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_demo_prints_the_table_and_saves_the_figure(tmp_path):
    result = run_demo(
        "--steps", "63", "--seed", "3", "--output", "fig.png", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout

    # The table: one row per printed checkpoint, in percent.
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%$", output, re.MULTILINE)
    assert [int(row[0]) for row in rows] == [0, 21, 42, 63]
    # The same experiment in this process gives the same numbers.
    expected = figure1.compare(figure1.FIGURE1_NETWORKS, 63, seed=3)
    for row, index in zip(rows, range(4)):
        for column, label in ((1, "without BN"), (2, "with BN")):
            assert float(row[column]) == pytest.approx(
                100 * expected[label].test_accuracy[index], abs=0.051
            )
    reached = re.search(r"^\s+steps to 95%\s+(.*)$", output, re.MULTILINE)
    want = [expected[label].steps_to_reach(0.95) for label in expected]
    assert re.split(r"\s{2,}", reached.group(1).strip()) == [
        "not reached" if steps is None else str(steps) for steps in want
    ]
    # Progress goes to stderr, one line per tenth of each network's steps.
    assert "with BN: step     63/63" in result.stderr

    figure = tmp_path / "fig.png"
    assert f"Figure 1 saved to {figure}" in output
    with open(figure, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments, message",
    [(["--steps", "0"], "--steps"), (["--seed", "-1"], "--seed")],
)
def test_demo_rejects_bad_options(tmp_path, arguments, message):
    result = run_demo(*arguments, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


# -- scripts/native_log.py: the demo's and the notebooks' quiet start ---------

# TensorFlow's own start-up lines, as it prints them on a machine without a
# GPU, and in the format of TensorFlow 2.15 and before.
START_UP_LOG = [
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR",
    "I0000 00:00:1796498585.465752   32278 cudart_stub.cc:31] Could not find "
    "cuda drivers on your machine, GPU will not be used.",
    "I0000 00:00:1796498585.520117   32278 cpu_feature_guard.cc:227] This "
    "TensorFlow binary is optimized to use available CPU instructions in "
    "performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796498675.964745    1084 cuda_platform.cc:52] failed call to "
    "cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "W0000 00:00:1796498675.964745    1084 gpu_device.cc:2344] Cannot dlopen "
    "some GPU libraries.",
    "2024-01-31 12:00:00.123456: E external/local_xla/xla/stream_executor/"
    "cuda/cuda_dnn.cc:9261] Unable to register cuDNN factory: Attempting to "
    "register factory for plugin cuDNN when one has already been registered",
    "2024-01-31 12:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN "
    "custom operations are on.",
]
NOT_START_UP_LOG = [
    "E0000 00:00:1796498675.964745    1084 op_kernel.cc:1830] OP_REQUIRES "
    "failed at example.cc:12 : RESOURCE_EXHAUSTED: out of memory",
    "F0000 00:00:1796498675.964745    1084 port.cc:1] Check failed: ok",
    "2024-01-31 12:00:00.123456: E tensorflow/core/example.cc:1] a real error",
    "/path/module.py:3: UserWarning: something a user should read",
    "ImportError: libtensorflow_framework.so.2: cannot open shared object file",
]


@pytest.mark.parametrize("line", START_UP_LOG)
def test_start_up_chatter_is_recognized(line):
    assert is_start_up_chatter(line + "\n")


@pytest.mark.parametrize("line", NOT_START_UP_LOG)
def test_errors_and_python_output_are_not_start_up_chatter(line):
    assert not is_start_up_chatter(line + "\n")


def test_quiet_native_log_shows_only_what_is_not_chatter(capfd):
    with quiet_native_log():
        os.write(2, "".join(line + "\n" for line in START_UP_LOG).encode())
        os.write(2, NOT_START_UP_LOG[0].encode() + b"\n")
    os.write(2, b"after the block\n")
    assert capfd.readouterr().err.splitlines() == [
        NOT_START_UP_LOG[0],
        "after the block",
    ]


def test_quiet_native_log_shows_everything_when_the_block_raises(capfd):
    with pytest.raises(ImportError, match="no such library"):
        with quiet_native_log():
            os.write(2, "".join(line + "\n" for line in START_UP_LOG).encode())
            raise ImportError("no such library")
    assert capfd.readouterr().err.splitlines() == START_UP_LOG


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow"
)
def test_demo_starts_without_tensorflows_native_log(tmp_path):
    result = run_demo(
        "--steps", "1", "--output", "fig.png", cwd=tmp_path, backend="tensorflow"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The demo's own progress is all its stderr holds.
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Training on scikit-learn's digits with the tensorflow")
    assert all(re.match(r"  .*: step ", line) for line in lines[1:]), lines
    for text in ("absl", "cudart_stub", "cuInit", "cpu_feature_guard", "AVX"):
        assert text not in result.stderr


def test_demo_shows_why_the_backend_failed_to_import(tmp_path):
    # A TensorFlow whose native library is missing: it logs on descriptor 2,
    # as the C++ side would, then fails to import.
    package = tmp_path / "broken" / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'W0000 00:00:1.5 7 loader.cc:9] a native warning\\n')\n"
        "raise ImportError('libtensorflow_cc.so.2: cannot open shared object')\n"
    )
    result = run_demo(
        "--steps", "1", cwd=tmp_path, backend="tensorflow", python_path=package.parent
    )
    assert result.returncode == 1
    # What the native side said before the failure, then Python's traceback.
    assert "loader.cc:9] a native warning" in result.stderr
    assert result.stderr.rstrip().endswith(
        "ImportError: libtensorflow_cc.so.2: cannot open shared object"
    )
    assert result.stdout == ""
