"""keras_bn.legacy: convolution kernels in layouts and orientations that the
real-release fixtures do not cover (Convolution3D, Keras 0.x files, shapes
that fit both layouts), against a NumPy statement of the old layers: a true
convolution on Theano, a cross-correlation on TensorFlow."""

import itertools
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from conftest import to_numpy
from legacy_fixtures import keras1_layer, write_keras0_sequential, write_keras1

from keras_bn import legacy

ZOO = Path(__file__).resolve().parent / "fixtures" / "real_zoo"


def correlate(x, kernel):
    """Valid cross-correlation, channels last: ``x`` (batch, *spatial,
    channels), ``kernel`` (*window, channels, filters)."""
    window = kernel.shape[:-2]
    out_shape = tuple(n - k + 1 for n, k in zip(x.shape[1:-1], window))
    y = np.zeros((x.shape[0], *out_shape, kernel.shape[-1]))
    for position in itertools.product(*(range(n) for n in out_shape)):
        patch = x[(slice(None), *(slice(p, p + k) for p, k in zip(position, window)))]
        y[(slice(None), *position)] = np.tensordot(
            patch,
            kernel,
            axes=(list(range(1, patch.ndim)), list(range(kernel.ndim - 1))),
        )
    return y


def old_output(x, th_kernel, bias, backend):
    """The old layer: its kernel stored ``(filters, channels, *window)``;
    Theano convolves (flips the window), TensorFlow correlates."""
    spatial = th_kernel.ndim - 2
    kernel = np.transpose(th_kernel, (*range(2, 2 + spatial), 1, 0))
    if backend == "theano":
        kernel = np.flip(kernel, axis=tuple(range(spatial)))
    return correlate(x, kernel) + bias


@pytest.mark.parametrize("backend", ["theano", "tensorflow"])
@pytest.mark.parametrize("rank", [2, 3])
def test_keras1_channels_first_kernels(tmp_path, rng, backend, rank):
    window, channels, filters = (3, 2, 2)[:rank], 2, 3
    th_kernel = rng.normal(size=(filters, channels, *window))
    bias = rng.normal(size=filters)
    path = tmp_path / "conv.h5"
    write_keras1(
        path, [keras1_layer("conv_1", {"W": th_kernel, "b": bias}, backend=backend)]
    )
    conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv3D
    spatial = (5, 4, 3)[:rank]
    model = keras.Sequential(
        [keras.Input((*spatial, channels)), conv(filters, window, name="conv")]
    )
    legacy.load_weights(model, path)
    x = rng.normal(size=(2, *spatial, channels))
    np.testing.assert_allclose(
        to_numpy(model(x.astype("float32"))),
        old_output(x, th_kernel, bias, backend),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("backend", ["theano", "tensorflow"])
def test_keras0_convolution1d_needs_the_backend(tmp_path, rng, backend):
    """Keras 0.x stored (filters, input_dim, length, 1) and records no
    backend."""
    th_kernel = rng.normal(size=(4, 3, 2, 1))
    bias = rng.normal(size=4)
    path = tmp_path / "conv1d.h5"
    write_keras0_sequential(path, [[th_kernel, bias]])
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.Conv1D(4, 2)])
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(legacy.LegacyFileError, match="backend='theano'") as raised:
        legacy.load_weights(model, path)
    assert raised.value.field == "backend" and raised.value.layer == "layer_0"
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    legacy.load_weights(model, path, backend=backend)
    x = rng.normal(size=(2, 6, 3))
    np.testing.assert_allclose(
        to_numpy(model(x.astype("float32"))),
        old_output(x, th_kernel[..., 0], bias, backend),
        rtol=1e-4,
        atol=1e-4,
    )


def test_a_shape_that_fits_both_layouts_needs_dim_ordering(tmp_path, rng):
    kernel = rng.normal(size=(3, 3, 3, 3))
    path = tmp_path / "square.h5"
    write_keras1(path, [keras1_layer("c", {"W": kernel, "b": np.zeros(3)})])
    model = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(3, 3)])
    with pytest.raises(legacy.LegacyFileError, match="dim_ordering='th'") as raised:
        legacy.load_weights(model, path)
    assert raised.value.field == "dim_ordering"
    for ordering in ("th", "tf"):
        legacy.load_weights(model, path, dim_ordering=ordering)
        stored = model.layers[0].get_weights()[0]
        as_tf = np.transpose(kernel, (2, 3, 1, 0)) if ordering == "th" else kernel
        np.testing.assert_allclose(stored, np.flip(as_tf, (0, 1)), rtol=1e-6)


def test_the_config_tells_the_dim_ordering(tmp_path, rng):
    """A whole-model file's config settles a shape that fits both."""
    kernel = rng.normal(size=(3, 3, 3, 3))
    path = tmp_path / "square.h5"
    config = {
        "class_name": "Sequential",
        "config": [
            {
                "class_name": "Convolution2D",
                "config": {"name": "c", "dim_ordering": "tf"},
            }
        ],
    }
    layers = [keras1_layer("c", {"W": kernel, "b": np.zeros(3)}, backend="tensorflow")]
    write_keras1(path, layers, keras_version="1.2.2", model_config=config)
    model = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(3, 3)])
    legacy.load_weights(model, path)
    np.testing.assert_allclose(model.layers[0].get_weights()[0], kernel, rtol=1e-6)
    # The caller's dim_ordering comes first (load_weights' docstring): it
    # overrides the config's.
    legacy.load_weights(model, path, dim_ordering="th")
    np.testing.assert_allclose(
        model.layers[0].get_weights()[0], np.transpose(kernel, (2, 3, 1, 0)), rtol=1e-6
    )


def test_a_backend_that_contradicts_the_file_is_refused(tmp_path, rng):
    path = tmp_path / "w.h5"
    write_keras1(path, [keras1_layer("d", {"W": rng.normal(size=(2, 2))})])
    with h5py.File(path, "r") as f:
        assert "backend" not in f.attrs  # told by the names: Theano
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    with pytest.raises(legacy.LegacyFileError, match="backend"):
        legacy.load_weights(model, path, backend="tensorflow")


@pytest.mark.parametrize(
    "layer, sample, kernel_shape, wanted",
    [
        (lambda: keras.layers.Conv2D(3, 2, name="c"), (5, 5, 2), (5, 5, 5, 5),
         (2, 2, 2, 3)),
        (lambda: keras.layers.Conv1D(4, 2, name="c"), (6, 3), (2, 2, 2, 2),
         (2, 3, 4)),
    ],
    ids=["conv2d", "conv1d"],
)  # fmt: skip
def test_a_kernel_that_fits_neither_layout(
    tmp_path, rng, layer, sample, kernel_shape, wanted
):
    """A Keras 1.x kernel whose shape is neither the channels-first nor the
    channels-last form of the model's: left as it is, and refused by the
    shape check, naming the layer and the array."""
    path = tmp_path / "w.h5"
    arrays = {"W": rng.normal(size=kernel_shape), "b": np.zeros(1)}
    write_keras1(path, [keras1_layer("c", arrays)])
    model = keras.Sequential([keras.Input(sample), layer()])
    with pytest.raises(legacy.LegacyFileError) as raised:
        legacy.load_weights(model, path)
    assert (raised.value.layer, raised.value.field) == ("c", "c_W")
    assert (
        f"Layer 'c': array 'c_W' has shape {kernel_shape}, the model's layer 'c' "
        f"takes shape {wanted}."
    ) in str(raised.value)


@pytest.mark.parametrize("backend", ["theano", "tensorflow"])
def test_a_keras1_transposed_kernel_other_than_2d(tmp_path, rng, backend):
    """Only the 2D transposed convolution (Deconvolution2D) had a layout of
    its own in Keras 1.x: another transposed kernel is read in Keras 3's
    layout, flipped in its spatial axis where Theano convolved."""
    kernel, bias = rng.normal(size=(3, 2, 4)), rng.normal(size=2)
    path = tmp_path / "w.h5"
    write_keras1(path, [keras1_layer("t", {"W": kernel, "b": bias}, backend=backend)])
    model = keras.Sequential(
        [keras.Input((5, 4)), keras.layers.Conv1DTranspose(2, 3, name="t")]
    )
    legacy.load_weights(model, path)
    stored, stored_bias = model.layers[0].get_weights()
    expected = kernel[::-1] if backend == "theano" else kernel
    np.testing.assert_allclose(stored, expected, rtol=1e-6)
    np.testing.assert_allclose(stored_bias, bias, rtol=1e-6)


@pytest.mark.parametrize("release", ["keras-1.2.2-theano", "keras-1.2.2-tensorflow"])
def test_a_transposed_kernel_alone_tells_its_layout_by_its_shape(release):
    """A Keras 1.x weights file alone records no layer config: a
    Deconvolution2D kernel's layout is told by its shape, (filters, stack,
    rows, cols) channels-first. Loaded into the model rebuilt from the
    release's JSON, it predicts what the release did."""
    import warnings

    directory = ZOO / release
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(
            directory / "deconv2d.json", weights=directory / "deconv2d.weights.h5"
        )
    for weight in model.weights:  # nothing left of the first load
        weight.assign(np.ones(weight.shape, weight.dtype))
    legacy.load_weights(
        model,
        directory / "deconv2d.weights.h5",
        keras_version="1.2.2",
        backend=release.rsplit("-", 1)[1],
    )
    arrays = np.load(directory / "deconv2d.npz")
    got = model.predict(arrays["x"], verbose=0)
    scale = float(np.max(np.abs(arrays["y"])))
    assert np.max(np.abs(got - arrays["y"])) <= 1e-4 * scale


def test_a_cntk_file_correlates_as_tensorflow_does(tmp_path):
    """Keras 2 on CNTK computed a correlation, as on TensorFlow: a file that
    records backend "cntk" keeps its kernels unflipped. (The file here is
    Keras 2.2.4's on TensorFlow with its backend attribute rewritten: its
    release's predictions stand for CNTK's.)"""
    import shutil
    import warnings

    import h5py

    directory = ZOO / "keras-2.2.4-tensorflow"
    weights = tmp_path / "cntk.weights.h5"
    shutil.copy(directory / "conv2d_rect.weights.h5", weights)
    with h5py.File(weights, "r+") as file:
        assert file.attrs["backend"] in (b"tensorflow", "tensorflow")
        file.attrs["backend"] = b"cntk"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = legacy.load_model(directory / "conv2d_rect.json", weights=weights)
    arrays = np.load(directory / "conv2d_rect.npz")
    got = model.predict(arrays["x"], verbose=0)
    scale = float(np.max(np.abs(arrays["y"])))
    assert np.max(np.abs(got - arrays["y"])) <= 1e-4 * scale


@pytest.mark.parametrize(
    "backend, told", [(None, "does not tell backend (None)"),
                      ("mxnet", "names an unknown backend ('mxnet')")],
)  # fmt: skip
def test_a_kernel_s_flip_needs_a_known_backend(backend, told):
    from keras_bn.legacy.kernels import KernelFacts, flips

    facts = KernelFacts("w.h5", 2, backend, None, {})
    with pytest.raises(legacy.LegacyFileError) as caught:
        flips(facts, "conv")
    assert f"the file {told}" in str(caught.value)
    assert (caught.value.layer, caught.value.field) == ("conv", "backend")


def test_a_contradicting_backend_names_both():
    from keras_bn.legacy.kernels import KernelFacts
    from keras_bn.legacy.reading import LegacyWeights

    weights = LegacyWeights("w.h5", "keras1", None, "theano", False, None, ())
    with pytest.raises(legacy.LegacyFileError) as caught:
        KernelFacts.of(weights, "tensorflow", None)
    assert str(caught.value) == (
        "w.h5: backend: the file was written with 'theano', the argument says "
        "'tensorflow'."
    )
    assert (caught.value.layer, caught.value.field) == (None, "backend")
    assert KernelFacts.of(weights, "theano", None).backend == "theano"
    assert KernelFacts.of(weights, None, None).backend == "theano"


def conv_file(tmp_path, rng, backend, size, filters=3, channels=2):
    """A Keras 1.x file of one channels-first Convolution2D."""
    path = tmp_path / "conv.h5"
    kernel = rng.normal(size=(filters, channels, *size))
    write_keras1(
        path,
        [keras1_layer("c", {"W": kernel, "b": np.zeros(filters)}, backend=backend)],
    )
    return path


@pytest.mark.parametrize(
    "size, padding, strides",
    [((2, 2), "same", (1, 1)), ((3, 2), "same", (1, 1)), ((3, 3), "same", (2, 1))],
)
def test_an_even_or_strided_same_convolution_on_theano_is_refused(
    tmp_path, rng, size, padding, strides
):
    """Theano's 'same' padded half the kernel before and cropped the end:
    shifted from Keras 3's for an even size or strides."""
    path = conv_file(tmp_path, rng, "theano", size)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, size, strides, padding=padding, name="c"),
        ]
    )
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_weights(model, path)
    assert (
        f"{path}: Layer 'c': a 'same' convolution on Theano with the kernel size "
        f"{size} and strides {strides} "
    ) in str(caught.value)
    assert (caught.value.layer, caught.value.field) == ("c", "padding")


@pytest.mark.parametrize(
    "backend, size, padding, strides",
    [("theano", (2, 2), "valid", (1, 1)), ("theano", (3, 3), "same", (1, 1)),
     ("theano", (2, 2), "valid", (2, 2)), ("tensorflow", (2, 2), "same", (2, 2))],
)  # fmt: skip
def test_other_convolutions_load(tmp_path, rng, backend, size, padding, strides):
    path = conv_file(tmp_path, rng, backend, size)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, size, strides, padding=padding, name="c"),
        ]
    )
    legacy.load_weights(model, path)


def test_a_shape_that_fits_both_layouts_names_the_shape(tmp_path, rng):
    path = tmp_path / "square.h5"
    write_keras1(
        path,
        [keras1_layer("c", {"W": rng.normal(size=(3, 3, 3, 3)), "b": np.zeros(3)})],
    )
    model = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(3, 3)])
    with pytest.raises(legacy.LegacyFileError) as caught:
        legacy.load_weights(model, path)
    assert str(caught.value).startswith(
        f"{path}: Layer 'c': the kernel's shape (3, 3, 3, 3) fits both the "
        "channels-first ('th') and channels-last ('tf') layouts"
    )
    assert caught.value.layer == "c"


def test_a_flip_needs_a_known_backend_on_the_file_s_path():
    from keras_bn.legacy.kernels import KernelFacts, flips

    with pytest.raises(legacy.LegacyFileError) as caught:
        flips(KernelFacts("w.h5", 2, None, None, {}), "conv")
    assert str(caught.value).startswith("w.h5: Layer 'conv': the file does not tell")
    assert caught.value.path == "w.h5"
    assert flips(KernelFacts("w.h5", 2, "theano", None, {}), "conv") is True
    assert flips(KernelFacts("w.h5", 2, "tensorflow", None, {}), "conv") is False
