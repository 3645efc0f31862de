"""keras_bn.legacy.load_model on the files the real old Keras releases wrote.

Every fixture with a whole-model file (Keras 1.0.7 on) or an architecture
(to_json, to_yaml) next to its weights file is rebuilt as a Keras 3 model,
which must predict what the release itself predicted (the npz ``y``), within
1e-4 of the output's scale; with keras_bn's layer, and with the stock one
where it computes the same (tests/real_fixtures.py's ``supports``). What
cannot be rebuilt (mode 2; mode 1 or per-activation statistics on a sample
of rank > 1 into the stock layer) must be refused, naming the layer.
"""

import json
import warnings

import numpy as np
import pytest
import real_fixtures as rf

from keras_bn import legacy

FIXTURES = rf.fixtures()


def _no_statistics(fixture):
    """A Keras 0.x Graph before 0.3.0 saved gamma and beta only."""
    return fixture.release.startswith("0.2") and fixture.name == "graph"


CASES = [
    pytest.param(fixture, kind, target, id=f"{fixture.id}-{kind}-{target}")
    for fixture in FIXTURES
    for kind in ("model", "json", "yaml")
    if fixture.has(kind) and (kind == "model" or fixture.has("weights"))
    if not _no_statistics(fixture)
    for target in ("keras_bn", "keras")
]


def _kwargs(fixture, kind):
    kwargs = {} if kind == "model" else {"weights": fixture.path("weights")}
    if fixture.release.startswith("0."):
        kwargs["backend"] = fixture.backend  # Keras 0.x files do not record it
    return kwargs


def test_every_release_is_covered():
    releases = {f.directory.name for f, _, _ in (c.values for c in CASES)}
    assert len(releases) == len(rf.release_dirs())
    kinds = {f.entry["kind"] for f, _, _ in (c.values for c in CASES)}
    assert kinds == {"sequential", "functional", "graph"}


@pytest.mark.parametrize("fixture, kind, target", CASES)
def test_rebuilt_model_predicts_what_the_release_did(fixture, kind, target):
    supported, why = rf.supports(fixture, target)
    x, y = rf.load_arrays(fixture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not supported:
            with pytest.raises(legacy.LegacyFileError) as error:
                legacy.load_model(
                    fixture.path(kind), batch_normalization=target,
                    **_kwargs(fixture, kind),
                )  # fmt: skip
            assert "BatchNormalization" in str(error.value)
            return
        model = legacy.load_model(
            fixture.path(kind), batch_normalization=target, **_kwargs(fixture, kind)
        )
    predicted = np.asarray(model.predict(x, batch_size=len(x), verbose=0))
    scale = max(1.0, float(np.max(np.abs(y))))
    assert predicted.shape == y.shape
    np.testing.assert_allclose(predicted, y, rtol=0, atol=1e-4 * scale)


def test_a_gamma_beta_only_graph_warns():
    (fixture,) = [f for f in FIXTURES if _no_statistics(f)]
    with pytest.warns(UserWarning, match="gamma and beta"):
        legacy.load_model(fixture.path("json"), **_kwargs(fixture, "json"))


# -- bad input -------------------------------------------------------------------


def _fixture(release, name):
    return next(f for f in FIXTURES if f.id == f"{release}/{name}")


def _edited(tmp_path, fixture, edit):
    config = json.loads(fixture.path("json").read_text())
    edit(config)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(config))
    return path


def test_unknown_layers_and_arguments_are_all_listed(tmp_path):
    fixture = _fixture("keras-1.0.8-theano", "conv2d_cf")

    def edit(config):
        config["config"][2]["class_name"] = "PReLU"
        config["config"][0]["config"]["border_mode"] = "full"
        config["config"][1]["config"]["mode"] = 2

    path = _edited(tmp_path, fixture, edit)
    with pytest.raises(legacy.LegacyFileError) as error:
        legacy.load_model(path, weights=fixture.path("weights"))
    message = str(error.value)
    assert "3 thing(s)" in message
    assert "'activation_5' (PReLU)" in message
    assert "border_mode" in message and "'full'" in message
    assert "mode 2" in message and "batchnormalization_8" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a model config"),
        ('{"class_name": "Sequential", "config": []}', "without layers"),
    ],
)
def test_a_config_that_does_not_parse(tmp_path, text, expected):
    path = tmp_path / "bad.json"
    path.write_text(text)
    weights = _fixture("keras-1.0.8-theano", "dense").path("weights")
    with pytest.raises(legacy.LegacyFileError, match=expected):
        legacy.load_model(path, weights=weights)


def test_yaml_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("class_name: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(legacy.LegacyFileError, match="would run code"):
        legacy.load_model(path, weights=path)


def test_weights_that_do_not_fit():
    fixture = _fixture("keras-1.0.8-theano", "dense")
    other = _fixture("keras-1.0.8-theano", "conv1d")
    with pytest.raises(legacy.LegacyFileError, match="shape|layers with weights"):
        legacy.load_model(fixture.path("json"), weights=other.path("weights"))


def test_a_truncated_file(tmp_path):
    fixture = _fixture("keras-2.2.4-tensorflow", "dense")
    path = tmp_path / "cut.h5"
    path.write_bytes(fixture.path("model").read_bytes()[:3000])
    with pytest.raises(legacy.LegacyFileError):
        legacy.load_model(path)


def test_a_weights_file_alone_is_not_a_model():
    fixture = _fixture("keras-1.0.8-theano", "dense")
    with pytest.raises(legacy.LegacyFileError, match="no architecture"):
        legacy.load_model(fixture.path("weights"))
