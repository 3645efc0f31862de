"""Convolution kernels from legacy files, for Keras 3's layout and
cross-correlation.

Two things differ between a legacy file's kernel and Keras 3's:

- **Layout.** Keras 0.x and 1.x with ``dim_ordering="th"`` (the default
  then, on either backend) stored a Convolution2D kernel as ``(filters,
  input channels, rows, cols)``, Convolution3D likewise; Keras 3 wants
  ``(rows, cols, input channels, filters)``. A Convolution1D was a 2D
  convolution inside: ``(filters, input_dim, length, 1)`` up to Keras 1.0.x,
  ``(length, 1, input_dim, filters)`` from 1.1.0; Keras 3 wants ``(length,
  input_dim, filters)``. A Deconvolution2D's ``(filters, stack, rows,
  cols)`` (``"th"``) or ``(rows, cols, stack, filters)`` (``"tf"``) becomes
  Conv2DTranspose's ``(rows, cols, filters, stack)``. Keras 2 and later
  store Keras 3's layout already.
- **Flip.** Every Theano release, Keras 2.x included, computed a true
  convolution (the kernel flipped); TensorFlow and Keras 3 compute a
  cross-correlation. A Theano kernel is flipped in every spatial axis,
  except a separable or depthwise convolution's depthwise kernel, which
  Keras 2's Theano backend reversed itself before convolving (Keras 1 had
  them on TensorFlow only).

The layout comes from the layer's config (``dim_ordering``) where the file
has one, else from the kernel's shape against the model's (ambiguous shapes
need ``dim_ordering=``); the backend from the file, else ``backend=``.
Keras 2's own loader (``preprocess_weights_for_loading`` and
``convert_kernel``) made the same conversions.
"""

import dataclasses

import keras
import numpy as np

from keras_bn.legacy import releases
from keras_bn.legacy.errors import LegacyFileError

__all__ = ["KernelFacts", "convert", "flips", "kind_of"]

# Backends that computed a cross-correlation, as Keras 3 does.
_CORRELATION_BACKENDS = ("tensorflow", "cntk", "jax", "torch", "numpy", "openvino")


@dataclasses.dataclass(frozen=True)
class KernelFacts:
    """What the file tells about its kernels.

    Attributes:
        path: The file.
        family: 0, 1, 2 or 3 (Keras 3 and later), or None.
        backend: The source backend, from the file, else the caller's.
        dim_ordering: The caller's ``dim_ordering`` (None: from the config or
            the shapes).
        layer_configs: The file's ``{layer name: (class, config)}``.
    """

    path: str
    family: int | None
    backend: str | None
    dim_ordering: str | None
    layer_configs: dict

    @classmethod
    def of(cls, weights, backend, dim_ordering, keras_version=None):
        if weights.backend is not None and backend is not None:
            if weights.backend != backend:
                raise LegacyFileError(
                    f"backend: the file was written with {weights.backend!r}, "
                    f"the argument says {backend!r}.",
                    path=weights.path,
                    field="backend",
                )
        return cls(
            weights.path,
            releases.family(weights, keras_version),
            weights.backend or backend,
            dim_ordering,
            weights.layer_configs,
        )


def kind_of(layer):
    """``"conv"``, ``"conv1d"``, ``"transpose"``, ``"depthwise"`` (the first
    array is a depthwise kernel: separable and depthwise convolutions),
    ``"conv_lstm"`` (input and recurrent kernels) or None for a layer
    without a convolution kernel."""
    L = keras.layers
    if isinstance(layer, L.Conv1D):
        return "conv1d"
    if isinstance(layer, (L.Conv2D, L.Conv3D)):
        return "conv"
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return "transpose"
    depthwise = (L.SeparableConv1D, L.SeparableConv2D, L.DepthwiseConv1D)
    if isinstance(layer, (*depthwise, L.DepthwiseConv2D)):
        return "depthwise"
    if isinstance(layer, L.ConvLSTM2D):
        return "conv_lstm"
    return None


def flips(facts, layer_name):
    """Whether the source computed a true convolution (Theano); raises where
    the backend is unknown."""
    if facts.backend == "theano":
        return True
    if facts.backend in _CORRELATION_BACKENDS:
        return False
    told = "does not tell" if facts.backend is None else "names an unknown"
    raise LegacyFileError(
        f"Layer '{layer_name}': the file {told} backend "
        f"({facts.backend!r}), and a convolution kernel trained with Theano "
        "must be flipped: pass backend='theano' or backend='tensorflow'.",
        path=facts.path,
        layer=layer_name,
        field="backend",
    )


def _ordering(facts, name, kernel, candidates):
    """``"th"`` or ``"tf"``: the caller's, the config's, else the one
    candidate layout (``{ordering: shape}``) the kernel's shape fits."""
    config = facts.layer_configs.get(name, ("", {}))[1]
    told = facts.dim_ordering or config.get("dim_ordering")
    if told in ("th", "tf"):
        return told
    fits = [key for key, shape in candidates.items() if kernel.shape == shape]
    if len(fits) == 1:
        return fits[0]
    if not fits:
        return None  # the shape check names the mismatch
    raise LegacyFileError(
        f"Layer '{name}': the kernel's shape {kernel.shape} fits both the "
        "channels-first ('th') and channels-last ('tf') layouts, and the file "
        "does not tell which: pass dim_ordering='th' or dim_ordering='tf'.",
        path=facts.path,
        layer=name,
        field="dim_ordering",
    )


def _legacy_layout(facts, name, kind, kernel, wanted):
    """A Keras 0.x/1.x kernel in Keras 3's layout."""
    spatial = len(wanted) - 2
    if kind == "conv":
        th = (wanted[-1], wanted[-2], *wanted[:spatial])
        ordering = _ordering(facts, name, kernel, {"th": th, "tf": wanted})
        if ordering == "th" and kernel.ndim == len(wanted):
            return np.transpose(kernel, (*range(2, 2 + spatial), 1, 0))
        return kernel
    if kind == "conv1d":
        length, channels, filters = wanted
        th, tf = (filters, channels, length, 1), (length, 1, channels, filters)
        ordering = _ordering(facts, name, kernel, {"th": th, "tf": tf})
        if ordering == "th" and kernel.ndim == 4:
            return np.transpose(kernel, (2, 3, 1, 0))[:, 0]
        if ordering == "tf" and kernel.ndim == 4:
            return kernel[:, 0]
        return kernel
    if kind == "transpose" and spatial == 2:
        rows, cols, filters, stack = wanted
        th, tf = (filters, stack, rows, cols), (rows, cols, stack, filters)
        ordering = _ordering(facts, name, kernel, {"th": th, "tf": tf})
        if ordering is not None and kernel.ndim == 4:
            axes = (2, 3, 0, 1) if ordering == "th" else (0, 1, 3, 2)
            return np.transpose(kernel, axes)
    return kernel


def _even_same(facts, source, target, kind):
    """Theano computed a "same" convolution as its "half" convolution (half
    the kernel padded on each side) cropped at the end (Keras' own code):
    with an even kernel size, or strides, shifted from Keras 3's "same",
    which no kernel can make up for. Refused."""
    sizes = tuple(getattr(target, "kernel_size", ()) or ())
    strides = tuple(getattr(target, "strides", ()) or ())
    same = getattr(target, "padding", "valid") == "same"
    even = any(size % 2 == 0 for size in sizes)
    strided = same and any(stride != 1 for stride in strides)
    if facts.backend != "theano" or not (
        (same and even) or strided or (kind == "conv_lstm" and even)
    ):
        return
    raise LegacyFileError(
        f"Layer '{source.name}': a 'same' convolution on Theano with the kernel "
        f"size {sizes} and strides {strides} (a ConvLSTM2D's recurrent "
        "convolution is always 'same'): Theano padded half the kernel before "
        "and cropped the end, which for an even size or strides is shifted "
        "from Keras 3's 'same'; it cannot be computed exactly.",
        path=facts.path,
        layer=source.name,
        field="padding",
    )


def convert(path, source, target, arrays, facts):
    """The layer's arrays with its kernel (the first array) in Keras 3's
    layout and orientation; other layers' arrays as they are."""
    kind = kind_of(target)
    if kind is None or not arrays:
        return arrays
    _even_same(facts, source, target, kind)
    if kind == "conv_lstm":
        # Its input and recurrent kernels, already in Keras 3's layout
        # (`recurrent`): flipped where Theano convolved.
        if len(arrays) >= 2 and flips(facts, source.name):
            flipped = [np.flip(a, axis=(0, 1)) for a in arrays[:2]]
            return [*map(np.ascontiguousarray, flipped), *arrays[2:]]
        return arrays
    kernel, wanted = arrays[0], tuple(target.weights[0].shape)
    if facts.family in (0, 1) and kind != "depthwise":
        kernel = _legacy_layout(facts, source.name, kind, kernel, wanted)
    # Keras 2's Theano backend reversed a depthwise kernel itself before
    # Theano's true convolution (_preprocess_conv2d_depthwise_kernel): a
    # cross-correlation, as stored. Other kernels are flipped.
    if kind != "depthwise" and flips(facts, source.name) and kernel.ndim == len(wanted):
        spatial = len(wanted) - 2
        kernel = np.flip(kernel, axis=tuple(range(spatial)))
    return [np.ascontiguousarray(kernel), *arrays[1:]]
