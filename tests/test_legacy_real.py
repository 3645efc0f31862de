"""keras_bn.legacy on files written by the real old Keras releases.

``tests/fixtures/real/<release>-<backend>/`` (tests/real_fixtures.py) holds,
per model, what the release wrote with ``save_weights`` (and ``model.save``
where it had it) and the release's own predictions on an input batch. Each
file loads into the Keras 3 twin of the model, with keras_bn's and with the
stock BatchNormalization, and must predict what the release predicted,
within 1e-4 of the output's scale (float32). ``keras-bn inspect`` tells each
file's release, backend and what its BatchNormalization computed.
"""

import warnings

import keras
import numpy as np
import pytest
import real_fixtures as rf
from conftest import release_param

from keras_bn import legacy
from keras_bn.cli import main

FIXTURES = rf.fixtures()


def non_default_epsilon(fixture):
    """What the caller knows and a weights file does not record: an epsilon
    other than the release's default (the generator's choices, in the
    manifest), as one number or per file layer."""
    epsilons = [spec["epsilon"] for spec in fixture.batch_norm_specs()]
    if fixture.name == "dense_eps":
        return 0.01
    if fixture.name in ("functional", "graph"):
        # The file's layer (Keras 1 and later), or the model's (a Keras 0.x
        # Graph's flat list names no layers).
        return {"b_bn": 0.01}
    if fixture.name == "dense_mode1" and epsilons == [0.1]:
        return 0.1
    return None


CASES = [
    release_param(
        fixture.directory.name,
        fixture,
        kind,
        target,
        id=f"{fixture.id}-{kind}-{target}",
    )
    for fixture in FIXTURES
    for kind in ("weights", "model")
    if fixture.has(kind)
    for target in ("keras_bn", "keras")
]


def load_kwargs(fixture, kind):
    kwargs = {}
    if kind == "weights" and fixture.release.startswith("1."):
        kwargs["keras_version"] = fixture.release
    if fixture.release.startswith("0."):
        kwargs["backend"] = fixture.backend  # Keras 0.x files do not record it
    if kind == "weights" and non_default_epsilon(fixture) is not None:
        kwargs["epsilon"] = non_default_epsilon(fixture)
    return kwargs


def without_statistics(fixture, model):
    """Whether the file holds fewer arrays than the model's weights: a Keras
    0.x Graph before 0.3.0 saved only gamma and beta."""
    stored = sum(len(group["weights"]) for group in fixture.entry["stored"]["groups"])
    return stored < len(model.weights)


def modes(fixture):
    return {spec["mode"] for spec in fixture.batch_norm_specs()}


def test_there_are_real_fixtures():
    assert len(FIXTURES) >= 20
    assert {f.backend for f in FIXTURES} == {"theano", "tensorflow"}


@pytest.mark.parametrize("fixture, kind, target", CASES)
def test_predictions_match_the_release(fixture, kind, target):
    supported, why = rf.supports(fixture, target)
    model = rf.build_model(fixture, batch_normalization=target)
    path = fixture.path(kind)
    if not supported:
        if kind == "weights":
            pytest.skip(f"a weights file does not record the mode: {why}")
        # A whole-model file records the mode: the loader refuses it.
        before = [w.copy() for w in model.get_weights()]
        with pytest.raises(legacy.LegacyFileError, match="mode") as raised:
            legacy.load_weights(model, path)
        assert raised.value.field == "mode"
        for got, want in zip(model.get_weights(), before):
            np.testing.assert_array_equal(got, want)
        return
    if without_statistics(fixture, model):
        # The release's predictions used running estimates the file lacks.
        with pytest.warns(UserWarning, match="recompute_statistics"):
            legacy.load_weights(model, path, **load_kwargs(fixture, kind))
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy.load_weights(model, path, **load_kwargs(fixture, kind))
    x, y = rf.load_arrays(fixture)
    got = np.asarray(model.predict(x, verbose=0, batch_size=len(x)), "float64")
    scale = float(np.max(np.abs(y)))
    error = float(np.max(np.abs(got - y)))
    print(f"\n{fixture.id} {kind} {target}: max error {error:.3g}, scale {scale:.3g}")
    assert error <= 1e-4 * scale, (error, scale)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.id)
def test_mode1_keras1_sets_samplewise_epsilon_in_root(fixture):
    if 1 not in modes(fixture) or not fixture.release.startswith("1."):
        pytest.skip("no Keras 1.x mode-1 layer")
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    layers = [
        layer for layer in rf.weighted_layers(model) if getattr(layer, "mode", 0) == 1
    ]
    for layer in layers:
        layer.samplewise_epsilon_in_root = False
    with pytest.warns(UserWarning, match="samplewise_epsilon_in_root=True"):
        legacy.load_weights(
            model, fixture.path("weights"), **load_kwargs(fixture, "weights")
        )
    assert layers and all(layer.samplewise_epsilon_in_root for layer in layers)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.id)
def test_weights_files_warn_of_the_assumed_epsilon(fixture):
    if isinstance(non_default_epsilon(fixture), float) or 2 in modes(fixture):
        pytest.skip("epsilon passed, or mode 2")
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    if without_statistics(fixture, model):
        pytest.skip("no running statistics: no epsilon enters")
    with pytest.warns(UserWarning, match=r"assumed the release's default.*epsilon="):
        legacy.load_weights(
            model, fixture.path("weights"), **load_kwargs(fixture, "weights")
        )


# What each release computed, as docs/legacy.md states it (and the
# predictions above confirm): the fourth array's form, the denominator and
# the default epsilon, by release and backend.
VARIANCE = ("variance", "sqrt(variance + epsilon)")
STD = ("standard deviation", "(running_std + epsilon)")


def release_facts(release, backend):
    if release in ("1.0.5",) or (release == "1.0.6" and backend == "theano"):
        return (*STD, "1e-06")
    if release == "1.0.7" and backend == "theano":
        return ("variance", "(sqrt(variance) + epsilon)", "1e-06")
    if release in ("1.0.6", "1.0.7"):
        return (*VARIANCE, "1e-06")
    if release.startswith(("1.0.", "1.1.")):
        return (*VARIANCE, "1e-05")
    return (*VARIANCE, "0.001")  # 1.2.x, 2.x, tf-keras


@pytest.mark.parametrize(
    "fixture, kind",
    [
        pytest.param(f, k, id=f"{f.id}-{k}")
        for f in FIXTURES
        for k in ("weights", "model")
        if f.has(k)
    ],
)
def test_inspect_tells_the_facts(capsys, fixture, kind):
    assert main(["inspect", str(fixture.path(kind))]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = {line.split(":")[0]: line for line in out.splitlines() if ":" in line}
    recorded = kind == "model" or not fixture.release.startswith(("0.", "1."))
    version = fixture.manifest["keras_version"] if recorded else "not recorded"
    assert lines["Keras version"].endswith(version)
    told = not fixture.release.startswith("0.")  # Keras 0.x records none
    assert lines["backend"].endswith(fixture.backend if told else "not recorded")
    if recorded:
        form, formula, epsilon = release_facts(fixture.release, fixture.backend)
        fourth = lines["BatchNormalization fourth array"]
        assert form in fourth and formula in fourth
        if kind == "weights":  # a whole model's layers tell their own
            assert epsilon in lines["BatchNormalization epsilon"]
    if any(spec["type"].startswith("conv") for spec in rf._layer_specs(fixture.entry)):
        kernels = out.split("convolution kernels:\n", 1)[1].split("\n\n", 1)[0]
        assert kernels.strip()
        for line in kernels.splitlines():
            if told:
                flipped = "; flipped in its spatial axes" in line
                assert flipped == (fixture.backend == "theano"), line
            else:
                assert "--backend theano" in line


# -- files as third parties published them: real-release files, edited as the
# published ones differed ------------------------------------------------------


def _fixture(release_dir, name):
    return next(
        f for f in FIXTURES if f.directory.name == release_dir and f.name == name
    )


def _edited_copy(tmp_path, fixture, kind, edit):
    """A copy of one of the fixture's HDF5 files, ``edit(file)`` applied."""
    import shutil

    import h5py

    path = tmp_path / f"edited.{kind}.h5"
    shutil.copy(fixture.path(kind), path)
    with h5py.File(path, "r+") as file:
        edit(file)
    return path


def _assert_predicts_the_release(fixture, path):
    """``path``, a weights file edited from ``fixture``'s, loads into the
    fixture's keras_bn twin, which then predicts the release's y."""
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy.load_weights(model, path, **load_kwargs(fixture, "weights"))
    x, y = rf.load_arrays(fixture)
    got = np.asarray(model.predict(x, verbose=0, batch_size=len(x)), "float64")
    assert np.max(np.abs(got - y)) <= 1e-4 * np.max(np.abs(y))


_FIRST_VARIANCE = "batch_normalization_2/batch_normalization_2/moving_variance:0"


def _first_variance(fixture, kind):
    """The moving variance of a Keras 2.2.4 fixture's first
    BatchNormalization, as stored."""
    import h5py

    with h5py.File(fixture.path(kind), "r") as file:
        root = file["model_weights"] if "model_weights" in file else file
        return root[_FIRST_VARIANCE][...]


def _set_first_variance(file, variance):
    root = file["model_weights"] if "model_weights" in file else file
    root[_FIRST_VARIANCE][...] = variance


@pytest.mark.parametrize("target", ["keras_bn", "keras"])
@pytest.mark.parametrize("kind", ["weights", "model"])
def test_a_variance_a_hair_below_zero_loads(tmp_path, target, kind):
    """A channel that never fired can store a moving variance of -4e-17: the
    release divided by sqrt(v + eps), finite, and so must the loaded layer
    (exactly: keras_bn's running_std + eps == sqrt(v + eps), the stock
    layer's variance v itself)."""
    fixture = _fixture("keras-2.2.4-tensorflow", "dense")
    tiny = np.array([-4.0e-17, -3.3e-19, -1.1e-19, 0.0])
    variance = _first_variance(fixture, kind)
    variance[: len(tiny)] = tiny
    path = _edited_copy(
        tmp_path, fixture, kind, lambda file: _set_first_variance(file, variance)
    )
    model = rf.build_model(fixture, batch_normalization=target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy.load_weights(model, path)
    # The file's first BatchNormalization, batch_normalization_2.
    layer = [w for w in rf.weighted_layers(model) if len(w.get_weights()) == 4][0]
    eps_release = 1e-3  # Keras 2.2.4's default, the fixture's
    denominator = np.sqrt(variance.astype("float64") + eps_release)
    fourth = layer.get_weights()[3].astype("float64")
    if target == "keras_bn":
        got = fourth + layer.epsilon
    else:
        got = np.sqrt(fourth + layer.epsilon)
    np.testing.assert_allclose(got, denominator, rtol=1e-6)
    assert np.all(np.isfinite(model.predict(rf.load_arrays(fixture)[0], verbose=0)))


def test_a_variance_below_minus_epsilon_is_still_refused(tmp_path):
    fixture = _fixture("keras-2.2.4-tensorflow", "dense")
    variance = _first_variance(fixture, "weights")
    variance[0] = -0.5
    path = _edited_copy(
        tmp_path, fixture, "weights", lambda file: _set_first_variance(file, variance)
    )
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(legacy.LegacyFileError, match="greater than -epsilon"):
        legacy.load_weights(model, path)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_keras1_tensorflow_names_with_a_session_suffix(tmp_path):
    """Keras 1.x on TensorFlow suffixed a name that repeated in the session
    (two models built in one session): Normalize_gamma_2:0. The file's
    arrays renamed so, then loaded: the release's own predictions."""
    fixture = _fixture("keras-1.2.2-tensorflow", "dense")
    renamed = []

    def suffix(file):
        for layer_name in [n.decode() for n in file.attrs["layer_names"]]:
            group = file[layer_name]
            names = [n.decode() for n in group.attrs["weight_names"]]
            if not any("gamma" in n for n in names):
                continue
            new_names = []
            for name in names:
                stem, _, tail = name.partition(":")
                group.move(name, f"{stem}_2:{tail}")
                new_names.append(f"{stem}_2:{tail}")
            renamed.extend(new_names)
            group.attrs["weight_names"] = [n.encode() for n in new_names]

    path = _edited_copy(tmp_path, fixture, "weights", suffix)
    assert len(renamed) >= 4
    _assert_predicts_the_release(fixture, path)


# -- loading: guards that a change could drop without another test noticing ------


def test_keras2_weights_into_a_mode1_layer_are_refused():
    """Keras 2 normalized featurewise only: its file into a keras_bn layer of
    mode 1 is refused, naming the mode, and the model is left as it was."""
    import keras_bn

    fixture = _fixture("keras-2.2.4-tensorflow", "dense")
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    for layer in rf.weighted_layers(model):
        if isinstance(layer, keras_bn.BatchNormalization):
            layer.mode = 1
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(legacy.LegacyFileError, match="mode") as raised:
        legacy.load_weights(model, fixture.path("weights"))
    assert raised.value.field == "mode"
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_a_failed_assignment_restores_every_layer(monkeypatch):
    """All or nothing: the second layer's assignment fails after the first
    one's went in; the first layer is put back as it was."""
    import keras

    import keras_bn

    fixture = _fixture("keras-1.2.2-tensorflow", "dense")
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    layers = rf.weighted_layers(model)
    assert isinstance(layers[1], keras_bn.BatchNormalization)
    before = [layer.get_weights() for layer in layers]
    calls = []

    def recording(cls):
        original = cls.set_weights

        def set_weights(self, weights):
            calls.append(self.name)
            if self is layers[1] and calls.count(self.name) == 1:
                raise RuntimeError("disk on fire")
            return original(self, weights)

        monkeypatch.setattr(cls, "set_weights", set_weights)

    recording(keras.layers.Layer)
    recording(keras_bn.BatchNormalization)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(legacy.LegacyFileError, match="model is as it was"):
            legacy.load_weights(model, fixture.path("weights"), keras_version="1.2.2")
    # The first layer went in, then the second failed, then both were restored.
    assert calls[:2] == [layers[0].name, layers[1].name]
    assert layers[0].name in calls[2:]
    for layer, want in zip(layers, before):
        for got, expected in zip(layer.get_weights(), want):
            np.testing.assert_array_equal(got, expected)


def test_an_epsilon_of_zero_is_taken():
    """epsilon=0.0 is a value (a std-form layer that added none): the
    target's denominator is then the file's std itself."""
    import h5py

    fixture = _fixture("keras-1.0.5-theano", "dense")
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy.load_weights(
            model,
            fixture.path("weights"),
            epsilon=0.0,
            **load_kwargs(fixture, "weights"),
        )
    layer = [w for w in rf.weighted_layers(model) if len(w.get_weights()) == 4][0]
    with h5py.File(fixture.path("weights"), "r") as file:
        group = file[file.attrs["layer_names"][1].decode()]
        names = [n.decode() for n in group.attrs["weight_names"]]
        stored = group[next(n for n in names if "running_std" in n)][...]
    np.testing.assert_allclose(
        layer.get_weights()[3].astype("float64") + layer.epsilon, stored, rtol=1e-6
    )


def test_layers_are_matched_by_name_not_position(tmp_path):
    """The file lists its layers in another order than the model (its
    layer_names reversed): every layer still gets its own arrays, and the
    model predicts the release's y."""
    fixture = _fixture("keras-1.2.2-tensorflow", "functional")

    def reverse(file):
        file.attrs["layer_names"] = list(file.attrs["layer_names"])[::-1]

    path = _edited_copy(tmp_path, fixture, "weights", reverse)
    _assert_predicts_the_release(fixture, path)


@pytest.mark.parametrize("renorm_momentum", [None, 0.9])
def test_weights_load_into_batch_renormalization_layers(renorm_momentum):
    """A release's file into keras_bn layers with renorm: inference is the
    release's, and renorm's own estimates (with renorm_momentum) start from
    the file's running estimates."""
    import keras

    import keras_bn

    fixture = _fixture("keras-2.2.4-tensorflow", "dense")
    plain = rf.build_model(fixture, batch_normalization="keras_bn")

    def with_renorm(layer):
        config = layer.get_config()
        if isinstance(layer, keras_bn.BatchNormalization):
            config.update(renorm=True, renorm_momentum=renorm_momentum)
        return layer.__class__.from_config(config)

    model = keras.models.clone_model(plain, clone_function=with_renorm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy.load_weights(model, fixture.path("weights"))
    x, y = rf.load_arrays(fixture)
    got = np.asarray(model.predict(x, verbose=0, batch_size=len(x)), "float64")
    assert np.max(np.abs(got - y)) <= 1e-4 * float(np.max(np.abs(y)))
    for layer in model.layers:
        if isinstance(layer, keras_bn.BatchNormalization) and renorm_momentum:
            weights = layer.get_weights()
            np.testing.assert_array_equal(weights[4], weights[2])
            np.testing.assert_array_equal(weights[5], weights[3])


def test_a_batch_normalization_with_a_repeated_role_is_refused(tmp_path):
    """A Keras 2.2.4 file whose BatchNormalization holds a second gamma
    (``gamma_1``, another array): which one is meant cannot be told, so the
    file is refused, naming its arrays, and the model keeps its weights."""
    import numpy as np

    fixture = _fixture("keras-2.2.4-tensorflow", "dense")

    def add_a_second_gamma(file):
        group = file["batch_normalization_2"]
        arrays = group["batch_normalization_2"]
        arrays.create_dataset("gamma_1:0", data=2 * np.asarray(arrays["gamma:0"]))
        names = list(group.attrs["weight_names"])
        group.attrs["weight_names"] = [*names, b"batch_normalization_2/gamma_1:0"]

    path = _edited_copy(tmp_path, fixture, "weights", add_a_second_gamma)
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(legacy.LegacyFileError, match="gamma_1:0") as raised:
        legacy.load_weights(model, path)
    assert raised.value.layer == "batch_normalization_2"
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_the_assumed_epsilon_is_said_once_for_every_layer():
    """Keras 2.2.4's weights file records no epsilon: both of the dense
    model's BatchNormalizations are named, the one default said once."""
    (fixture,) = [f for f in FIXTURES if f.id == "keras-2.2.4-tensorflow/dense"]
    model = rf.build_model(fixture, batch_normalization="keras_bn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy.load_weights(model, fixture.path("weights"))
    (message,) = [
        str(w.message)
        for w in caught
        if "does not record the epsilon" in str(w.message)
    ]
    names = [
        group["group"]
        for group in fixture.entry["stored"]["groups"]
        if group["group"].startswith("batch_normalization")
    ]
    assert len(names) == 2
    assert f"layers {names}; assumed the release's default 0.001. If" in message


def test_a_keras3_legacy_h5_file_is_of_the_keras2_layout(tmp_path):
    """Keras 3's model.save('*.h5') writes the layer_names layout with its
    own version: read as Keras 2.x or later."""
    inputs = keras.Input((3,))
    path = tmp_path / "keras3.h5"
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    weights = legacy.read_weights(path)
    assert weights.keras_version.startswith("3.")
    assert weights.format == "keras2"
