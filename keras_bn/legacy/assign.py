"""Putting a legacy file's arrays into a Keras 3 model.

The file's layers that hold arrays are matched, in order, with the model's
layers that hold weights; each array is checked and converted (a
BatchNormalization's fourth array for the target layer's form and epsilon,
a convolution kernel for Keras 3's layout and cross-correlation), checked
again in the dtype of the variable it goes into, and only when every layer
has passed is anything assigned: all or nothing.
"""

import dataclasses
import math
import numbers
import os
import warnings
from collections.abc import Mapping

import keras

from keras_bn.legacy import kernels, layers, releases
from keras_bn.legacy.errors import LegacyFileError
from keras_bn.legacy.reading import LegacyLayer, read_weights

__all__ = ["load_read_weights", "load_weights"]


@dataclasses.dataclass(frozen=True)
class _Options:
    running_std: str
    epsilon: float | None
    keras_version: str | None
    backend: str | None
    dim_ordering: str | None


# -- matching -----------------------------------------------------------------


def _weighted_layers(layer):
    """The model's layers that hold weights, nested models flattened, in the
    order of ``model.layers``."""
    if isinstance(layer, keras.Model):
        return [leaf for sub in layer.layers for leaf in _weighted_layers(sub)]
    return [layer] if layer.weights else []


def _file_layers(weights, targets):
    """The file's weighted layers, one per target layer. A Keras 0.x Graph's
    flat list is cut by the targets' weight counts; its BatchNormalizations
    hold 4 arrays from Keras 0.3.0 on, 2 (gamma, beta) before."""
    if weights.format != "keras0_graph":
        leaves = {target.name for target in targets}
        return [
            piece
            for layer in weights.layers
            if layer.arrays
            for piece in _split_nested(layer, leaves)
        ]
    (graph,) = weights.layers
    for batch_norm_count in (4, 2):
        counts = [
            batch_norm_count if layers.is_batch_norm(t) else len(t.weights)
            for t in targets
        ]
        if sum(counts) == len(graph.arrays):
            break
    else:
        raise LegacyFileError(
            f"the Graph's flat list holds {len(graph.arrays)} arrays; the "
            f"model's weighted layers take {sum(len(t.weights) for t in targets)} "
            "(BatchNormalizations counted as 4, or as 2 for files before Keras "
            "0.3.0).",
            path=weights.path,
            layer="graph",
        )
    pieces, start = [], 0
    for count in counts:
        names = graph.weight_names[start : start + count]
        label = f"graph {names[0]}..{names[-1]}" if names else "graph (empty)"
        pieces.append(LegacyLayer(label, names, graph.arrays[start : start + count]))
        start += count
    return pieces


def _split_nested(layer, leaves):
    """A file's group for a nested model holds its layers' arrays, named
    ``<layer>_W`` (Keras 1), ``<layer>/<weight>`` or ``<model>/<layer>/<weight>``
    (Keras 2): one `LegacyLayer` per model layer named in them (``leaves``).
    A group that is itself one of the model's layers, or whose names do not
    all tell one, is kept whole."""
    if layer.name in leaves:
        return [layer]
    pieces = {}
    for name, array in zip(layer.weight_names, layer.arrays):
        owner = _owner(name, leaves)
        if owner is None:
            return [layer]
        names, arrays = pieces.setdefault(owner, ([], []))
        names.append(name)
        arrays.append(array)
    return [
        LegacyLayer(owner, tuple(names), tuple(arrays))
        for owner, (names, arrays) in pieces.items()
    ]


def _owner(weight_name, leaves):
    """The model layer a nested model's array belongs to: a component of a
    ``/`` path, else the longest layer name followed by ``_``."""
    for part in weight_name.split("/")[:-1]:
        if part in leaves:
            return part
    if "/" in weight_name:
        return None
    matches = [leaf for leaf in leaves if weight_name.startswith(leaf + "_")]
    return max(matches, key=len) if matches else None


# -- loading -------------------------------------------------------------------


def _by_name(sources, targets):
    """The file's layers in the order of the model's, where every model
    layer's name is one file layer's (a functional model's layer order
    need not be the file's); else as they are, matched by position."""
    by_name = {source.name: source for source in sources}
    names = [target.name for target in targets]
    if len(by_name) == len(sources) and sorted(by_name) == sorted(names):
        return [by_name[name] for name in names]
    return sources


def _check_options(path, options):
    def refuse(field, expected, value):
        return LegacyFileError(
            f"{field}: expected {expected}, got {value!r}.", path=path, field=field
        )

    if options.running_std not in ("auto", "std", "variance"):
        raise refuse("running_std", '"auto", "std" or "variance"', options.running_std)
    epsilons = options.epsilon
    if not isinstance(epsilons, dict):
        epsilons = {None: epsilons}
    for name, epsilon in epsilons.items():
        if (name is not None and not isinstance(name, str)) or (
            epsilon is not None
            and (
                not isinstance(epsilon, numbers.Real)
                or isinstance(epsilon, bool)
                or not math.isfinite(epsilon)
                or epsilon < 0
            )
        ):
            raise refuse(
                "epsilon",
                "None, a finite number >= 0, or {layer name: such a number}",
                options.epsilon,
            )
    version = options.keras_version
    if version is not None and (
        not isinstance(version, str) or releases.version_tuple(version) is None
    ):
        raise refuse("keras_version", 'None or a version such as "1.0.8"', version)
    if options.backend not in (None, "theano", "tensorflow"):
        raise refuse("backend", 'None, "theano" or "tensorflow"', options.backend)
    if options.dim_ordering not in (None, "th", "tf"):
        raise refuse("dim_ordering", 'None, "th" or "tf"', options.dim_ordering)


def _check_model(path, model):
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model: expected a Keras model, got {type(model).__name__}.")
    if not model.built:
        raise LegacyFileError(
            f"model: '{model.name}' is not built; build it (call it once, or "
            "give it an Input) so that its weights exist.",
            path=path,
            field="model",
        )


def _plan(weights, model, options):
    """Every target layer's `layers.Step`, ``{file layer: epsilon}`` for those
    whose epsilon was assumed, and the target layers that get no running
    statistics: everything checked, nothing assigned."""
    path = weights.path
    targets = _weighted_layers(model)
    sources = _file_layers(weights, targets)
    if len(sources) != len(targets):
        raise LegacyFileError(
            f"the file holds {len(sources)} layers with weights "
            f"{[s.name for s in sources]}; the model has {len(targets)} "
            f"{[t.name for t in targets]}.",
            path=path,
        )
    sources = _by_name(sources, targets)
    facts = kernels.KernelFacts.of(
        weights, options.backend, options.dim_ordering, options.keras_version
    )
    bn_options = (options.running_std, options.epsilon, options.keras_version)
    plan, assumed, without_statistics = [], {}, []
    for source, target in zip(sources, targets):
        file_batch_norm = any(
            layers.role(name) == "fourth" for name in source.weight_names
        )
        batch_norm = layers.batch_norm_of(target)
        if layers.is_named(source) and file_batch_norm != (batch_norm is not None):
            kind = "a" if file_batch_norm else "not a"
            raise LegacyFileError(
                f"Layer '{source.name}': the file's layer is {kind} "
                f"BatchNormalization, the model's layer '{target.name}' is a "
                f"{type(target).__name__}.",
                path=path,
                layer=source.name,
            )
        if batch_norm is None:
            plan.append(layers.plain_step(path, source, target, facts))
            continue
        bn = releases.batch_norm_source(weights, source.name, bn_options, target.name)
        step = layers.batch_norm_step(path, source, batch_norm, bn)
        if len(step.arrays) != len(target.weights):
            raise LegacyFileError(
                f"Layer '{source.name}': the model's layer '{target.name}' takes "
                f"{len(target.weights)} arrays, a BatchNormalization gives "
                f"{len(step.arrays)}.",
                path=path,
                layer=source.name,
            )
        if len(layers.batch_norm_roles(path, source)) == 2:
            without_statistics.append(target.name)
        elif bn.epsilon_origin == "default":
            assumed[source.name] = bn.epsilon
        plan.append(step)
    return plan, assumed, without_statistics


def _assign(model, plan, path):
    """Assigns every step, or, if one fails, restores every layer as it
    was."""
    previous = [
        (step.target, step.target.get_weights(), _attributes(step)) for step in plan
    ]
    try:
        for step in plan:
            for key, value in step.attributes.items():
                setattr(step.target, key, value)
            step.target.set_weights(step.arrays)
    except Exception as error:
        for target, values, attributes in previous:
            for key, value in attributes.items():
                setattr(target, key, value)
            target.set_weights(values)
        raise LegacyFileError(
            f"assigning the weights failed, the model is as it was: "
            f"{type(error).__name__}: {error}",
            path=path,
        ) from error
    if any(step.attributes for step in plan):
        # A compiled predict/train function would keep the old formula.
        for attribute in ("predict_function", "test_function", "train_function"):
            if getattr(model, attribute, None) is not None:
                setattr(model, attribute, None)


def _attributes(step):
    return {key: getattr(step.target, key) for key in step.attributes}


def load_weights(
    model: keras.Model,
    path: str | os.PathLike[str],
    *,
    running_std: str = "auto",
    epsilon: float | Mapping[str, float] | None = None,
    keras_version: str | None = None,
    backend: str | None = None,
    dim_ordering: str | None = None,
) -> None:
    """Loads a Keras 0.x, 1.x or 2.x HDF5 file into a Keras 3 model.

    The file's layers that hold arrays go into the model's layers that hold
    weights (nested models flattened): by name where every model layer's
    name is one of the file's, else in order (that of ``model.layers``).
    Arrays go in as they are (Dense: kernel then bias), except:

    - a BatchNormalization's fourth array, converted so that the model
      computes at inference exactly what the source did: into a
      `keras_bn.BatchNormalization`, ``running_std = denominator -
      epsilon``; into a `keras.layers.BatchNormalization`,
      ``moving_variance = denominator**2 - epsilon``, where ``denominator``
      is the source's (docs/legacy.md has each release's);
    - convolution kernels, transposed from Keras 0.x/1.x's channels-first
      layout and flipped where Theano computed a true convolution.

    A keras_bn layer of mode 1 gets the source's samplewise formula
    (``samplewise_epsilon_in_root``: Keras 1.x put epsilon in the root too).
    Files from Keras 0.1.x (and 0.x Graph files before 0.3.0) saved only
    gamma and beta: those load, the running estimates keep their values, and
    a warning points at `keras_bn.recompute_statistics`. Where the file does
    not record an epsilon and the release's default is assumed, a warning
    says so.

    Everything is read, checked and converted before anything is assigned:
    a failed call leaves the model as it was.

    Args:
        model: A built Keras 3 model (or layer).
        path: The HDF5 file.
        running_std: What a BatchNormalization's fourth array is: ``"auto"``
            (from the file's Keras version; every Keras 0.x file holds a std),
            ``"std"`` or ``"variance"``. Keras 1.x weights files record no
            version: pass ``"std"`` (Keras 1.0.5 and earlier, 1.0.6 with
            Theano) or ``"variance"`` (1.0.6 with TensorFlow, 1.0.7 on), or
            ``keras_version``.
        epsilon: The source layers' epsilon, for files that do not record it
            (all but whole-model files): one number for every layer, or
            ``{layer name: epsilon}``, the file's or the model's name (the
            others get the default);
            default: the source version's default (1e-6 for every Keras
            that kept a std), with a warning naming the layers.
        keras_version: The Keras version that wrote the file, for files that
            do not record it (Keras 1.x weights files), e.g. ``"1.0.8"``.
        backend: ``"theano"`` or ``"tensorflow"``, the backend that wrote
            the file, for files that do not tell it (Keras 0.x) and hold
            convolutions: Theano's kernels are flipped.
        dim_ordering: ``"th"`` or ``"tf"``, the ``dim_ordering`` of a Keras
            0.x/1.x file's convolutions, for files where neither the config
            nor the kernels' shapes tell; given, it comes before the
            config's.

    Raises:
        LegacyFileError: (a ValueError) the file cannot be read, its layout
            is unknown, its layers do not match the model's in number,
            kinds or shapes, an array is not finite in the model's dtype,
            an argument is invalid, or what the file means cannot be told
            (the message names the argument to pass).
        TypeError: ``model`` is not a Keras layer or model.
    """
    load_read_weights(
        model, read_weights(path), running_std=running_std, epsilon=epsilon,
        keras_version=keras_version, backend=backend, dim_ordering=dim_ordering,
    )  # fmt: skip


def load_read_weights(model, weights, *, running_std="auto", epsilon=None,
                      keras_version=None, backend=None, dim_ordering=None):  # fmt: skip
    """`load_weights` of a `LegacyWeights` already read (`load_model` gives
    it the layer configs of the architecture it built the model from: one
    source of truth)."""
    options = _Options(running_std, epsilon, keras_version, backend, dim_ordering)
    _check_options(weights.path, options)
    _check_model(weights.path, model)
    plan, assumed, without_statistics = _plan(weights, model, options)
    _assign(model, plan, weights.path)
    _warn(weights, plan, assumed, without_statistics)


def _warn(weights, plan, assumed, without_statistics):
    if without_statistics:
        warnings.warn(
            f"{weights.path}: the BatchNormalization layers {without_statistics} "
            "saved only gamma and beta (Keras 0.1.x, or a 0.x Graph before "
            "0.3.0); their running estimates keep the values they had. "
            "Recompute them from data: keras_bn.recompute_statistics(model, data).",
            UserWarning,
            stacklevel=3,
        )
    if assumed:
        values = sorted(set(assumed.values()))
        warnings.warn(
            f"{weights.path}: the file does not record the epsilon of the "
            f"BatchNormalization layers {list(assumed)}; assumed the release's "
            f"default {', '.join(f'{v:g}' for v in values)}. If they used "
            "another, pass it: load_weights(..., epsilon=...).",
            UserWarning,
            stacklevel=3,
        )
    in_root = [
        step.target.name
        for step in plan
        if step.attributes.get("samplewise_epsilon_in_root")
    ]
    if in_root:
        warnings.warn(
            f"{weights.path}: Keras 1.x normalized samplewise (mode 1) with "
            "(x - m) / (sqrt(var + epsilon) + epsilon); the layers "
            f"{in_root} now do too (samplewise_epsilon_in_root=True).",
            UserWarning,
            stacklevel=3,
        )
