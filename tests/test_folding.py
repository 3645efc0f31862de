"""keras_bn.fold_batchnorm against the original models and NumPy."""

import keras
import numpy as np
import pytest
from conftest import BACKEND
from numpy.lib.stride_tricks import sliding_window_view
from reference import broadcast_shape, seed_featurewise, variance_form

from keras_bn import BatchNormalization, fold_batchnorm

layers = keras.layers
CLOSE = dict(rtol=1e-5, atol=1e-5)


def randomize_batch_norms(model, rng):
    """Non-trivial weights in every Batch Normalization, so that folding
    changes the kernels (fresh layers normalize as the identity)."""
    for layer in model._flatten_layers():
        if isinstance(layer, (BatchNormalization, layers.BatchNormalization)):
            weights = layer.get_weights()
            fresh = [rng.normal(0.0, 0.7, w.shape) for w in weights]
            # The last array is a std or a variance: positive.
            fresh[-1] = rng.uniform(0.5, 2.0, weights[-1].shape)
            layer.set_weights(fresh)
    return model


def batch_norm(kind, **kwargs):
    if kind == "keras_bn":
        return BatchNormalization(axis=-1, **kwargs)
    if kind == "keras_bn_per_activation":
        return BatchNormalization(**kwargs)
    return layers.BatchNormalization(**kwargs)


def numpy_batch_norm(layer, x):
    """The layer's inference output, from its weights and the formulas in
    tests/reference.py."""
    ndim = x.ndim
    if isinstance(layer, BatchNormalization):
        axis = layer.axis
        axes = tuple(range(1, ndim)) if axis is None else (axis % ndim,)
    else:
        axes = (layer.axis % ndim,)
    weights = [w.reshape(broadcast_shape(x.shape, axes)) for w in layer.get_weights()]
    gamma = weights.pop(0) if layer.scale else 1.0
    beta = weights.pop(0) if layer.center else 0.0
    if isinstance(layer, BatchNormalization):
        return seed_featurewise(x, gamma, beta, *weights, layer.epsilon)
    return variance_form(x, gamma, beta, *weights, layer.epsilon)


def numpy_dense(layer, x):
    kernel, *bias = layer.get_weights()
    return x @ kernel + (bias[0] if bias else 0.0)


def numpy_conv2d_valid(layer, x):
    """A channels-last 'valid' Conv2D, stride 1."""
    kernel, *bias = layer.get_weights()
    height, width = kernel.shape[:2]
    windows = sliding_window_view(x, (height, width), axis=(1, 2))
    y = np.einsum("nhwcij,ijcf->nhwf", windows, kernel)
    return y + (bias[0] if bias else 0.0)


def batch_norm_names(model):
    return [
        layer.name
        for layer in model.layers
        if isinstance(layer, (BatchNormalization, layers.BatchNormalization))
    ]


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("keras_bn", {}),
        ("keras_bn_per_activation", {}),
        ("keras_bn", {"center": False, "scale": False}),
        ("keras", {}),
        ("keras", {"center": False, "scale": False, "epsilon": 0.1}),
    ],
)
def test_sequential_dense_stack_matches_original_and_numpy(rng, kind, kwargs, use_bias):
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(5, use_bias=use_bias),
            batch_norm(kind, **kwargs),
            layers.Dense(3),
        ]
    )
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(8, 6)).astype("float32")

    folded, report = fold_batchnorm(model, return_report=True)

    assert isinstance(folded, keras.Sequential)
    assert batch_norm_names(folded) == []
    assert report.folded == {model.layers[1].name: model.layers[0].name}
    assert report.unfolded == {}
    assert folded.layers[0].use_bias
    dense, norm, head = model.layers
    expected = numpy_dense(head, numpy_batch_norm(norm, numpy_dense(dense, x)))
    np.testing.assert_allclose(folded.predict(x, verbose=0), expected, **CLOSE)
    np.testing.assert_allclose(
        folded.predict(x, verbose=0), model.predict(x, verbose=0), **CLOSE
    )


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("kind", ["keras_bn", "keras"])
@pytest.mark.parametrize(
    "conv, input_shape",
    [
        (layers.Conv1D, (10, 3)),
        (layers.Conv2D, (7, 6, 3)),
        (layers.Conv3D, (5, 4, 6, 2)),
    ],
)
def test_convolutions_fold_in_functional_models(rng, conv, input_shape, kind, use_bias):
    inputs = keras.Input(input_shape)
    h = conv(4, 3, padding="same", use_bias=use_bias)(inputs)
    h = batch_norm(kind)(h)
    model = keras.Model(inputs, layers.ReLU()(h))
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(3, *input_shape)).astype("float32")

    folded, report = fold_batchnorm(model, return_report=True)

    assert batch_norm_names(folded) == []
    assert list(report.folded.values()) == [model.layers[1].name]
    np.testing.assert_allclose(
        folded.predict(x, verbose=0), model.predict(x, verbose=0), **CLOSE
    )


def test_conv2d_fold_matches_numpy(rng):
    inputs = keras.Input((7, 6, 3))
    conv = layers.Conv2D(5, (3, 2), use_bias=False)
    norm = BatchNormalization(axis=-1, epsilon=1e-3)
    model = keras.Model(inputs, norm(conv(inputs)))
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(2, 7, 6, 3)).astype("float32")
    expected = numpy_batch_norm(norm, numpy_conv2d_valid(conv, x))
    np.testing.assert_allclose(
        fold_batchnorm(model).predict(x, verbose=0), expected, **CLOSE
    )


def test_channels_first_convolution_folds(rng):
    inputs = keras.Input((3, 6, 5))
    h = layers.Conv2D(4, 3, data_format="channels_first")(inputs)
    model = keras.Model(inputs, BatchNormalization(axis=1)(h))
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(2, 3, 6, 5)).astype("float32")
    folded, report = fold_batchnorm(model, return_report=True)
    assert report.unfolded == {} and batch_norm_names(folded) == []
    if BACKEND == "tensorflow":
        # TensorFlow has no channels-first convolution on CPU, so neither
        # model can run here; the fold itself is checked above.
        return
    # The convolution in NumPy, channels-last, moved back to channels-first.
    convolved = numpy_conv2d_valid(model.layers[1], x.transpose(0, 2, 3, 1))
    expected = numpy_batch_norm(model.layers[-1], convolved.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(folded.predict(x, verbose=0), expected, **CLOSE)


@pytest.mark.parametrize("constant", [True, False])
def test_per_activation_weights_after_a_convolution(rng, constant):
    """axis=None weights fold only where they are equal at every position."""
    inputs = keras.Input((5, 5, 2))
    h = layers.Conv2D(3, 3)(inputs)
    norm = BatchNormalization()
    model = keras.Model(inputs, norm(h))
    randomize_batch_norms(model, rng)
    if constant:
        # One value per channel, repeated over the 3x3 output positions.
        norm.set_weights(
            [np.broadcast_to(w[:1, :1], w.shape) for w in norm.get_weights()]
        )
    x = rng.normal(size=(4, 5, 5, 2)).astype("float32")

    folded, report = fold_batchnorm(model, return_report=True)

    if constant:
        assert batch_norm_names(folded) == [] and report.unfolded == {}
    else:
        assert batch_norm_names(folded) == [norm.name]
        assert "differ across the positions" in report.unfolded[norm.name]
    np.testing.assert_allclose(
        folded.predict(x, verbose=0), model.predict(x, verbose=0), **CLOSE
    )


def test_per_activation_weights_after_a_rank_3_dense_stay(rng):
    inputs = keras.Input((4, 3))
    norm = BatchNormalization()
    model = keras.Model(inputs, norm(layers.Dense(2)(inputs)))
    randomize_batch_norms(model, rng)
    folded, report = fold_batchnorm(model, return_report=True)
    assert list(report.unfolded) == [norm.name]
    x = rng.normal(size=(5, 4, 3)).astype("float32")
    np.testing.assert_allclose(
        folded.predict(x, verbose=0), model.predict(x, verbose=0), **CLOSE
    )


def test_unfoldable_batch_normalizations_are_kept_and_listed(rng):
    inputs = keras.Input((6,))
    at_input = BatchNormalization(name="at_input")(inputs)
    after_relu = BatchNormalization(name="after_relu")(layers.ReLU()(at_input))
    activated = layers.Dense(6, activation="tanh")(after_relu)
    after_activation = BatchNormalization(name="after_activation")(activated)
    samplewise = BatchNormalization(mode=1, name="samplewise")(
        layers.Dense(6)(after_activation)
    )
    branch = layers.Dense(6)(samplewise)
    branched = BatchNormalization(name="branched")(branch)
    merged = layers.Add()([branched, branch])
    shared = layers.Dense(6)
    twice = BatchNormalization(name="after_shared")(shared(shared(merged)))
    foldable = BatchNormalization(name="foldable")(layers.Dense(4)(twice))
    model = keras.Model(inputs, foldable)
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(7, 6)).astype("float32")

    folded, report = fold_batchnorm(model, return_report=True)

    assert list(report.folded) == ["foldable"]
    reasons = report.unfolded
    assert set(reasons) == {
        "at_input",
        "after_relu",
        "after_activation",
        "samplewise",
        "branched",
        "after_shared",
    }
    assert "input" in reasons["at_input"]
    assert "ReLU" in reasons["after_relu"]
    assert "tanh" in reasons["after_activation"]
    assert "mode 1" in reasons["samplewise"]
    assert "also goes elsewhere" in reasons["branched"]
    assert "more than once" in reasons["after_shared"]
    assert sorted(batch_norm_names(folded)) == sorted(reasons)
    np.testing.assert_allclose(
        folded.predict(x, verbose=0), model.predict(x, verbose=0), **CLOSE
    )


def test_nested_models_are_copied_and_listed(rng):
    inner = keras.Sequential(
        [keras.Input((4,)), layers.Dense(4), BatchNormalization(name="inner_bn")]
    )
    inputs = keras.Input((4,))
    model = keras.Model(inputs, inner(inputs))
    randomize_batch_norms(model, rng)
    folded, report = fold_batchnorm(model, return_report=True)
    assert "nested model" in report.unfolded["inner_bn"]
    x = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(
        folded.predict(x, verbose=0), model.predict(x, verbose=0), **CLOSE
    )


def test_the_original_model_is_untouched(rng):
    model = keras.Sequential(
        [keras.Input((5,)), layers.Dense(4, use_bias=False), BatchNormalization()]
    )
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(6, 5)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    prediction = model.predict(x, verbose=0)

    folded = fold_batchnorm(model)

    assert not isinstance(folded, tuple)
    assert len(model.layers) == 2 and not model.layers[0].use_bias
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(model.predict(x, verbose=0), prediction)
    # The copy has weights of its own.
    folded.layers[0].kernel.assign(np.zeros((5, 4), "float32"))
    np.testing.assert_array_equal(model.get_weights()[0], before[0])


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(3)
        self.norm = BatchNormalization()

    def call(self, inputs):
        return self.norm(self.dense(inputs))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: layers.Dense(3), TypeError, "model: expected a Sequential"),
        (lambda: "model", TypeError, "model: expected a Sequential"),
        (Subclassed, TypeError, "subclassed"),
        (
            lambda: keras.Sequential([layers.Dense(3), BatchNormalization()]),
            ValueError,
            "must be built",
        ),
    ],
)
def test_models_that_cannot_be_folded_raise(make, error, message):
    with pytest.raises(error, match=message):
        fold_batchnorm(make())
