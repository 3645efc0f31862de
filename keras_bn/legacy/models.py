"""Whole old Keras models into Keras 3: `load_model`.

The architecture (a whole-model HDF5 file's ``model_config``, or a
``to_json()``/``to_yaml()`` file) is read (`architecture`), every layer
translated (`layers_map`) and checked before anything is built; then the
Keras 3 model is built and `keras_bn.legacy.load_weights` puts the weights
in, told what the architecture says (Keras version, backend, each
BatchNormalization's epsilon, the convolutions' ``dim_ordering``).
"""

import contextlib
import dataclasses
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import keras

from keras_bn.legacy import releases
from keras_bn.legacy.architecture import parse, read_architecture
from keras_bn.legacy.assign import load_read_weights
from keras_bn.legacy.errors import LegacyFileError, short_repr
from keras_bn.legacy.layers_map import Plan, translate
from keras_bn.legacy.reading import read_weights

__all__ = ["Rebuilt", "load_model", "rebuild"]

_HDF5 = b"\x89HDF\r\n\x1a\n"
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


@dataclasses.dataclass
class Rebuilt:
    """A rebuilt model and what was done: ``layers`` (one line per old
    layer), ``conversions`` and ``assumptions`` (lines of text); ``warned``:
    the assumptions that `load_weights` warned of (the others are the
    report's fixed lines), which `load_model` warns of again."""

    model: keras.Model
    layers: list[str]
    conversions: list[str]
    assumptions: list[str]
    warned: list[str] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def _only_legacy_errors(path, what):
    """Any other exception from reading an untrusted file, as a
    `LegacyFileError` (its message bounded)."""
    try:
        yield
    except LegacyFileError:
        raise
    except (RecursionError, OverflowError, ArithmeticError, ValueError, TypeError,
            KeyError, IndexError, AttributeError) as error:  # fmt: skip
        message = " ".join(str(error).split())[:300]
        raise LegacyFileError(
            f"{what}: {type(error).__name__}: {message}", path=str(path)
        ) from None


# A layer's sizes (units, filters, ...) are bounded by what the weights file
# holds: a Dense of 10**9 units allocates its kernel before any shape is
# compared. Other whole numbers (shapes, strides, repeats) by this, or the
# file's size if larger.
_WEIGHT_SIZES = ("units", "filters", "output_dim", "input_dim", "depth_multiplier")
_LARGEST_OTHER = 2**24


def _integers(value):
    if isinstance(value, Plan):
        for key, inner in value.kwargs.items():
            for found in _integers(inner):
                yield (key, found[1]) if found[0] is None else found
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from _integers(inner)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield None, value


def _check_sizes(arch, plans, held):
    """Every whole number of every layer's arguments, within what the
    weights file justifies (checked before anything is built)."""
    elements = sum(int(array.size) for layer in held.layers for array in layer.arrays)
    problems = []
    for node in arch.nodes:
        plan = plans[node.name]
        if plan.substitute is not None:
            continue
        for key, value in _integers(plan):
            bound = elements if key in _WEIGHT_SIZES else max(elements, _LARGEST_OTHER)
            if value > bound:
                problems.append(
                    (node.name, node.class_name, key,
                     f"{key}={value} is more than the weights file's "
                     f"{elements} numbers justify")
                )  # fmt: skip
                break
    if problems:
        raise _problem_list(arch, problems)


def _is_hdf5(path):
    try:
        with open(path, "rb") as file:
            return file.read(8) == _HDF5
    except OSError:
        return False


def _sources(path, weights):
    """The `Architecture`, the weights file and its `LegacyWeights`."""
    path = str(path)
    if _is_hdf5(path):
        held = read_weights(path)
        if not held.whole_model or not isinstance(held.model_config, dict):
            raise LegacyFileError(
                "a weights file holds no architecture: pass the model's "
                "to_json()/to_yaml() file, with this file as weights=.",
                path=path,
                field="model_config",
            )
        arch = parse(held.model_config, path, held.keras_version, held.backend)
        if weights is None:
            return arch, path, held
    else:
        arch = read_architecture(path)
        if weights is None:
            raise LegacyFileError(
                "an architecture file holds no weights: pass weights= (the "
                "save_weights() HDF5 file).",
                path=path,
                field="weights",
            )
    return arch, str(weights), read_weights(weights)


def _problem_list(arch, problems):
    lines = "; ".join(f"layer '{n}' ({c}): {f}: {m}" for n, c, f, m in problems)
    layers = sorted({n for n, c, f, m in problems if f == "class_name"})
    hint = (
        f" To supply {layers} yourself, pass substitutes={{name: a "
        "keras.layers.Layer or a function}."
        if layers
        else ""
    )
    return LegacyFileError(
        f"cannot rebuild {len(problems)} thing(s): {lines}.{hint}",
        path=arch.path,
        layer=problems[0][0],
        field=problems[0][2],
    )


def _check_substitutes(arch, substitutes):
    """``substitutes``: a mapping of the architecture's layer names to a
    ``keras.layers.Layer`` or a callable (wrapped in ``keras.layers.Lambda``:
    the caller's code, never the file's)."""
    if substitutes is None:
        return {}
    if not isinstance(substitutes, dict) or not all(
        isinstance(name, str) for name in substitutes
    ):
        raise LegacyFileError(
            "substitutes: expected a dict of layer names to layers or "
            f"functions, got {type(substitutes).__name__}.",
            path=arch.path,
            field="substitutes",
        )
    names = {node.name for node in arch.nodes}
    unknown = sorted(set(substitutes) - names)
    if unknown:
        raise LegacyFileError(
            f"substitutes: {unknown[:10]} name no layer of the architecture.",
            path=arch.path,
            field="substitutes",
        )
    for name, value in substitutes.items():
        if not (isinstance(value, keras.layers.Layer) or callable(value)):
            raise LegacyFileError(
                f"substitutes: '{name}': expected a keras.layers.Layer or a "
                f"function, got {type(value).__name__}.",
                path=arch.path,
                layer=name,
                field="substitutes",
            )
    return substitutes


def _model_ordering(arch, dim_ordering):
    """The caller's ``dim_ordering``, else the one every Keras 0.x/1.x layer
    that records one records, else None."""
    if dim_ordering is not None:
        return dim_ordering
    values = [node.config.get("dim_ordering") for node in arch.nodes]
    if not all(value is None or isinstance(value, str) for value in values):
        return None  # refused by the layer's translation
    recorded = set(values) - {None}
    if arch.generation < 2 and len(recorded) == 1 and recorded <= {"th", "tf"}:
        return recorded.pop()
    return None


def _plans(arch, target, substitutes, dim_ordering=None):
    plans, problems = {}, []
    for name, shape, _ in arch.inputs:
        if shape is None or any(d is None for d in shape[1:]):
            problems.append(
                (name, "Input", "input_shape", f"unknown shape {short_repr(shape)}")
            )
    for node in arch.nodes:
        if node.name in substitutes:
            plans[node.name] = Plan(substitute=substitutes[node.name])
            continue
        plan = translate(node, arch.generation, target, dim_ordering)
        problems += [(node.name, node.class_name, f, m) for f, m in plan.problems]
        plans[node.name] = plan
    if problems:
        raise _problem_list(arch, problems)
    return plans


def _call(node, plan, inputs, transpose):
    L = keras.layers
    x = inputs if len(inputs) > 1 else inputs[0]
    if plan.substitute is not None:
        layer = plan.substitute
        if not isinstance(layer, L.Layer):
            layer = L.Lambda(layer, name=node.name)
        return layer(x)
    if plan.channels_first and transpose:
        layer = plan.build(name=node.name, data_format="channels_last")
        to_last, to_first = _permutations(plan, len(x.shape))
        x = L.Permute(to_last, name=f"{node.name}_to_channels_last")(x)
        y = L.Permute(to_first, name=f"{node.name}_to_channels_first")(layer(x))
    elif plan.per_activation_bn and len(x.shape) > 2:
        raise ValueError(
            "per-activation statistics over samples of rank > 1: the stock "
            "layer takes one axis; use batch_normalization='keras_bn'"
        )
    else:
        y = plan.build(name=node.name)(x)
    declared = plan.output_shape
    if declared is not None and tuple(y.shape[1:]) != tuple(declared):
        raise ValueError(
            f"the file declares the output shape {tuple(declared)}; Keras 3 "
            f"computes {tuple(y.shape[1:])}"
        )
    return y


def _permutations(plan, rank):
    """Permute's dims into and out of channels-last, for an input of
    ``rank`` axes (batch included): the channels follow the batch (and a
    ConvLSTM2D's time axis)."""
    if plan.cls is keras.layers.ConvLSTM2D:  # (time, channels, rows, cols)
        to_first = (1, 4, 2, 3) if plan.kwargs["return_sequences"] else (3, 1, 2)
        return (1, 3, 4, 2), to_first
    spatial = rank - 2
    to_last = tuple(range(2, spatial + 2)) + (1,)
    return to_last, (spatial + 1,) + tuple(range(1, spatial + 1))


def _build(arch, plans, transpose):
    # Keras builds (and later calls) a model by recursion over its depth:
    # room for the deepest chain read (architecture.DEEPEST_CHAIN).
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * arch.depth + 1000))
    try:
        return _build_graph(arch, plans, transpose)
    finally:
        sys.setrecursionlimit(limit)


def _build_graph(arch, plans, transpose):
    tensors, inputs = {}, []
    for name, shape, dtype in arch.inputs:
        tensors[name] = keras.Input(tuple(shape), dtype=dtype, name=name)
        inputs.append(tensors[name])
    for node in arch.nodes:
        try:
            args = [tensors[i] for i in node.inbound]
            tensors[node.name] = _call(node, plans[node.name], args, transpose)
        except Exception as error:  # a bad argument value or shape
            message = " ".join(str(error).split())[:300]
            substituted = [i for i in node.inbound if plans.get(i, Plan()).substitute]
            if plans[node.name].substitute is not None:
                field = "substitutes"
            elif substituted:
                field = "substitutes"
                message = (
                    f"its input from the substitute for {substituted} does not "
                    f"fit: {message}"
                )
            else:
                field = "config"
            raise _problem_list(
                arch, [(node.name, node.class_name, field, message)]
            ) from None
    outputs = [tensors[o] for o in arch.outputs]
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name="legacy_model",
    )


def _as_built(arch, held, weights_path):
    """The weights file as read, its layer configs those of the architecture
    the model was built from (a whole-model file's model_config is read
    once, by `architecture.parse`: nothing else in the file can change what
    the weights are converted with)."""
    if held.path != weights_path:
        held = read_weights(weights_path)
    configs = {node.name: (node.class_name, node.config) for node in arch.nodes}
    return dataclasses.replace(held, layer_configs=configs)


def _load_options(arch, held, plans, whole, keras_version, backend, dim_ordering):
    options = {}
    version = keras_version or arch.keras_version
    if held.keras_version is None and version is not None and arch.generation:
        options["keras_version"] = str(version)
    if held.backend is None and (backend or arch.backend):
        options["backend"] = backend or arch.backend
    if not whole:
        options["epsilon"] = {
            name: float(plan.kwargs["epsilon"])
            for name, plan in plans.items()
            if "epsilon" in plan.kwargs
        } or None
    if arch.generation < 2 and dim_ordering is not None:
        options["dim_ordering"] = dim_ordering
    return options


def _describe(arch, plans, held, options, transpose):
    layers = []
    for node in arch.nodes:
        plan = plans[node.name]
        if plan.substitute is not None:
            what = getattr(plan.substitute, "__name__", type(plan.substitute).__name__)
            layers.append(f"{node.name}: {node.class_name} -> substitute {what}")
            continue
        args = ", ".join(f"{k}={short_repr(v)}" for k, v in plan.kwargs.items())
        wrap = " between Permutes" if plan.channels_first and transpose else ""
        layers.append(
            f"{node.name}: {node.class_name} -> {plan.cls.__name__}({args}){wrap}"
        )
    # What the file, with the version and backend the architecture or the
    # caller told, says its fourth arrays are (the weights loaded: it told).
    told = dataclasses.replace(held, backend=held.backend or options.get("backend"))
    form, _ = releases.source_form(told, "auto", options.get("keras_version"))
    generation = releases.family(held, options.get("keras_version"))
    conversions = [
        f"BatchNormalization fourth array: {releases.FORM_MEANINGS[form]}; "
        "converted to each target layer's form and epsilon",
        "convolution kernels: "
        + releases.kernel_conversion(
            generation, held.backend or options.get("backend")
        ),
    ]
    assumptions = [f"load_weights options from the architecture: {options}"]
    if transpose and any(p.channels_first for p in plans.values()):
        assumptions.append(
            "channels-first convolutions/pooling run channels-last between "
            "Permute layers (the data between layers stays channels-first)"
        )
    assumptions.append(
        "initializers, regularizers, constraints and dropout rates only matter "
        "for training: dropped or kept as is"
    )
    return layers, conversions, assumptions


def rebuild(
    path: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    batch_normalization: str = "keras_bn",
    channels_first: str = "auto",
    keras_version: str | None = None,
    backend: str | None = None,
    dim_ordering: str | None = None,
    substitutes: Mapping[str, Callable[..., Any]] | None = None,
) -> Rebuilt:
    """The `Rebuilt` model and its report; see `load_model`. Warnings that
    `load_weights` raises are recorded in ``assumptions``."""
    if batch_normalization not in ("keras_bn", "keras"):
        raise ValueError(
            "batch_normalization: expected 'keras_bn' or 'keras', got "
            f"{batch_normalization!r}."
        )
    if channels_first not in ("auto", "native", "transpose"):
        raise ValueError(
            "channels_first: expected 'auto', 'native' or 'transpose', got "
            f"{channels_first!r}."
        )
    if dim_ordering not in (None, "th", "tf"):
        raise ValueError(
            f"dim_ordering: expected None, 'th' or 'tf', got {dim_ordering!r}."
        )
    with _only_legacy_errors(path, "cannot read the architecture"):
        arch, weights_path, held = _sources(path, weights)
        ordering = _model_ordering(arch, dim_ordering)
        plans = _plans(
            arch, batch_normalization, _check_substitutes(arch, substitutes), ordering
        )
        _check_sizes(arch, plans, held)
    transpose = channels_first == "transpose" or (
        channels_first == "auto" and keras.backend.backend() == "tensorflow"
    )
    with _only_legacy_errors(arch.path, "cannot build the model"):
        model = _build(arch, plans, transpose)
    whole = weights_path == str(path)
    options = _load_options(arch, held, plans, whole, keras_version, backend, ordering)
    substituted = sorted(n for n, p in plans.items() if p.substitute is not None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _only_legacy_errors(weights_path, "cannot load the weights"):
                built = _as_built(arch, held, weights_path)
                load_read_weights(model, built, **options)
        except LegacyFileError as error:
            if not substituted:
                raise
            # Nothing was assigned (all or nothing): say what may be why.
            wrapped = LegacyFileError(
                f"{error} (built with substitutes for {substituted}: their "
                "outputs set the shapes of what follows)"
            )
            wrapped.path, wrapped.layer, wrapped.field = (
                error.path,
                error.layer,
                error.field,
            )
            raise wrapped from None
    layers, conversions, assumptions = _describe(arch, plans, held, options, transpose)
    warned = [
        " ".join(str(w.message).split())
        for w in caught
        if os.path.abspath(w.filename).startswith(_PACKAGE)  # not numpy's, h5py's
    ]
    return Rebuilt(model, layers, conversions, assumptions + warned, warned)


def load_model(
    path: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    batch_normalization: str = "keras_bn",
    channels_first: str = "auto",
    keras_version: str | None = None,
    backend: str | None = None,
    dim_ordering: str | None = None,
    substitutes: Mapping[str, Callable[..., Any]] | None = None,
) -> keras.Model:
    """An old Keras model (0.x, 1.x, 2.x) as a built Keras 3 model with its
    weights, computing at inference what the old release computed.

    Args:
        path: A whole-model HDF5 file (Keras 1.0.7 and later ``save``), or an
            architecture file (``to_json()`` or ``to_yaml()``, Keras 0.x to
            2.x; YAML read safely).
        weights: The ``save_weights()`` HDF5 file, for an architecture file.
        batch_normalization: ``"keras_bn"`` (`keras_bn.BatchNormalization`,
            modes 0 and 1, per-activation statistics) or ``"keras"`` (the
            stock layer: mode 0 with one axis only).
        channels_first: ``"auto"`` (TensorFlow: channels-first convolutions
            and pooling run between two ``Permute`` layers; else natively),
            ``"native"`` or ``"transpose"``.
        keras_version, backend: What neither file records (Keras 0.x files
            with convolutions need ``backend``); passed to `load_weights`.
        dim_ordering: ``"th"`` or ``"tf"``: the image layout of a Keras
            0.x/1.x model's layers that do not record one (Keras 1.x's
            UpSampling, ZeroPadding and Cropping layers followed
            keras.json), where no other layer of the model records it; also
            passed to `load_weights` for ambiguous kernels.
        substitutes: ``{layer name: layer}`` for layers it cannot rebuild
            (a ``Lambda``, whose stored code is never run, or a class Keras
            3 lacks): a ``keras.layers.Layer``, or a function (wrapped in
            ``keras.layers.Lambda``). Its output must fit what follows
            (checked when the model is built, before any weight is
            assigned); the file's arrays for that layer load into it where
            they fit its weights.

    Raises:
        LegacyFileError: a file cannot be read, the architecture holds
            layers or arguments it cannot rebuild (all of them listed,
            nothing built), or the weights do not fit.
    """
    rebuilt = rebuild(
        path, weights=weights, batch_normalization=batch_normalization,
        channels_first=channels_first, keras_version=keras_version, backend=backend,
        dim_ordering=dim_ordering, substitutes=substitutes,
    )  # fmt: skip
    for line in rebuilt.warned:
        warnings.warn(line, UserWarning, stacklevel=2)
    return rebuilt.model
