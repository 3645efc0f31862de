"""Conversions between keras_bn.BatchNormalization and its descendants.

Every other Batch Normalization keeps a running *variance* where the seed
keeps a running *standard deviation*, and each puts its epsilon elsewhere
(docs/semantics.md, "Exact conversion at inference"). The converters here carry
the weights over so that the two layers agree at inference for every input:

- `from_keras` / `to_keras`: to and from `keras.layers.BatchNormalization`;
- `from_torch`: from `torch.nn.BatchNorm1d`, `BatchNorm2d` and `BatchNorm3d`;
- `model_from_keras` / `model_to_keras`: the same for every Batch
  Normalization of a whole Sequential or functional model, in a copy.

`convert_running_statistic` does the arithmetic from any source form; the
legacy file loader (`keras_bn.legacy`) uses it too.
"""

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from keras_bn import _validation, functional
from keras_bn.batch_normalization import BatchNormalization

__all__ = [
    "SwapReport",
    "convert_running_statistic",
    "from_keras",
    "from_torch",
    "model_from_keras",
    "model_to_keras",
    "to_keras",
]

# How a source normalizes with its fourth array ``a`` and its epsilon ``e``:
# "std": (x - m) / (a + e), the seed and Keras up to 1.0.5;
# "variance": (x - m) / sqrt(a + e), Keras 1.0.7 on, Keras 2 and 3, PyTorch;
# "theano_variance": (x - m) / (sqrt(a) + e), Keras 1.0.7 to 1.0.8 on Theano.
SOURCE_FORMS = ("std", "variance", "theano_variance")


def convert_running_statistic(
    fourth: Any,
    form: str,
    epsilon: float,
    target_form: str,
    target_epsilon: float,
    label: str,
) -> np.ndarray:
    """The fourth array of a target layer that normalizes as the source did.

    Args:
        fourth: The source's fourth array (its std or variance).
        form: How the source used it, one of ``SOURCE_FORMS``.
        epsilon: The source's epsilon.
        target_form: ``"std"`` for a keras_bn layer (``running_std``) or
            ``"variance"`` for a stock Keras layer (``moving_variance``).
        target_epsilon: The target layer's epsilon.
        label: What error messages call the layer, e.g. ``"Layer 'bn'"``.

    Returns:
        A float64 array equal to the source at inference: the two
        denominators are equal.

    Raises:
        ValueError: when the target cannot express the source's denominator
            (it would need a negative std or variance).
    """
    _validation.one_of("form", form, SOURCE_FORMS, expected=f"one of {SOURCE_FORMS}")
    _validation.one_of(
        "target_form", target_form, ("std", "variance"), expected="'std' or 'variance'"
    )
    fourth = np.asarray(fourth, dtype="float64")
    # What the source itself could evaluate: sqrt(a + e) needs a + e > 0 (a
    # channel that never fired can store a variance of -4e-17), sqrt(a)
    # needs a >= 0.
    if form == "variance" and np.any(fourth + epsilon <= 0):
        raise ValueError(
            f"{label}: its fourth array is a variance and must be greater than "
            f"-epsilon ({-epsilon}), got minimum {fourth.min()}."
        )
    if form == "theano_variance" and np.any(fourth < 0):
        raise ValueError(
            f"{label}: its fourth array is a variance and must be >= 0, got "
            f"minimum {fourth.min()}."
        )
    if form == "variance" and target_form == "variance":
        # Directly: through the std, (sqrt(v + e))**2 - e' rounds a variance
        # of 0 to -2e-19.
        # v + (e - e'): with equal epsilons, v itself, however small. The
        # target's denominator sqrt(v + e) is real: v + e > 0 was checked.
        return fourth + (epsilon - target_epsilon)
    # Every form as a seed-form std with its own epsilon: the denominator is
    # std + std_epsilon in all three.
    if form == "std":
        std, std_epsilon = fourth, epsilon
    elif form == "variance":
        std, std_epsilon = functional.std_from_variance(fourth, epsilon, 0.0), 0.0
    else:
        std, std_epsilon = functional.std_from_variance(fourth, 0.0, 0.0), epsilon
    if target_form == "variance":
        try:
            return functional.variance_from_std(std, std_epsilon, target_epsilon)
        except ValueError as error:
            raise ValueError(
                f"{label}: moving_variance would be negative: "
                f"{error} Use a smaller epsilon."
            ) from None
    # Equal denominators: running_std + target_epsilon == std + std_epsilon.
    running_std = std + std_epsilon - target_epsilon
    if np.any(running_std < 0):
        raise ValueError(
            f"{label}: running_std would be negative (minimum "
            f"{running_std.min()}): the source's denominator is smaller than "
            f"the target epsilon {target_epsilon}. Use a smaller epsilon."
        )
    return running_std


def _built_input_rank(layer):
    if not layer.built or layer.input_spec is None or layer.input_spec.ndim is None:
        raise ValueError(
            f"layer: '{layer.name}' must be built (called once, or build() with "
            "an input shape) so that its weights exist."
        )
    return layer.input_spec.ndim


def _affine(layer):
    """``(gamma, beta)`` as float64 arrays, ``None`` where the layer has none."""
    gamma = np.asarray(layer.gamma.numpy(), "float64") if layer.scale else None
    beta = np.asarray(layer.beta.numpy(), "float64") if layer.center else None
    return gamma, beta


def _weight_list(gamma, beta, mean, fourth):
    return [w for w in (gamma, beta) if w is not None] + [mean, fourth]


def _shared_options(layer):
    """The constructor arguments that both Batch Normalizations take alike."""
    return dict(
        center=layer.center,
        scale=layer.scale,
        gamma_regularizer=layer.gamma_regularizer,
        beta_regularizer=layer.beta_regularizer,
        gamma_constraint=layer.gamma_constraint,
        beta_constraint=layer.beta_constraint,
        name=layer.name,
        dtype=layer.dtype_policy,
        trainable=layer.trainable,
    )


def _build_for_axis(layer, rank, axis, size):
    """Builds ``layer`` for inputs of ``rank`` whose feature ``axis`` has
    ``size`` entries; the other sizes stay unknown."""
    shape = [None] * rank
    shape[axis] = size
    layer.build(tuple(shape))


def from_keras(layer: keras.layers.BatchNormalization) -> BatchNormalization:
    """A `keras_bn.BatchNormalization` equal at inference to a stock layer.

    ``running_std = sqrt(moving_variance + epsilon) - epsilon``, both
    epsilons the stock layer's; axis, momentum (the same convention:
    ``new = momentum * old + (1 - momentum) * batch``), center, scale,
    regularizers, constraints, dtype, name and trainability carry over. In
    training the two differ as their formulas do (the seed adds epsilon
    twice).

    A stock layer with ``renorm=True`` becomes a renorm layer with its
    ``renorm_clipping`` and ``renorm_momentum`` (Keras' two-rate design):
    ``renorm_mean`` as it is, ``renorm_std = renorm_stddev - epsilon`` (so
    that ``d`` is the stock layer's, and ``r`` differs by ``epsilon /
    renorm_stddev``: the seed's ``r`` adds epsilon to the batch's std).

    Args:
        layer: A built `keras.layers.BatchNormalization`.

    Returns:
        A built `keras_bn.BatchNormalization` with the converted weights.
    """
    if not isinstance(layer, keras.layers.BatchNormalization):
        raise TypeError(
            "layer: expected a keras.layers.BatchNormalization, got "
            f"{type(layer).__name__}."
        )
    rank = _built_input_rank(layer)
    # Keras' own layer gained renorm in a recent release; before it, none
    # renormalizes.
    renormalizes = getattr(layer, "renorm", False)
    renorm = {}
    if renormalizes:
        renorm = dict(
            renorm=True,
            renorm_clipping=dict(layer.renorm_clipping or {}),
            renorm_momentum=layer.renorm_momentum,
        )
    converted = BatchNormalization(
        epsilon=layer.epsilon,
        momentum=layer.momentum,
        axis=layer.axis,
        **renorm,
        **_shared_options(layer),
    )
    _build_for_axis(converted, rank, layer.axis, layer.moving_mean.shape[0])
    gamma, beta = _affine(layer)
    running_std = convert_running_statistic(
        layer.moving_variance.numpy(),
        "variance",
        layer.epsilon,
        "std",
        converted.epsilon,
        f"Layer '{layer.name}'",
    )
    weights = _weight_list(
        gamma, beta, np.asarray(layer.moving_mean.numpy()), running_std
    )
    if renormalizes:
        renorm_std = np.asarray(layer.renorm_stddev.numpy(), "float64") - layer.epsilon
        # Keras itself divides by max(renorm_stddev, sqrt(epsilon)).
        weights += [np.asarray(layer.renorm_mean.numpy()), np.maximum(renorm_std, 0)]
    converted.set_weights(weights)
    return converted


def _stock_renorm() -> bool:
    """Whether this Keras' own layer has renorm (recent releases only)."""
    return "renorm" in inspect.signature(keras.layers.BatchNormalization).parameters


def to_keras(
    layer: BatchNormalization, *, epsilon: float | None = None
) -> keras.layers.BatchNormalization:
    """A `keras.layers.BatchNormalization` equal at inference to a keras_bn one.

    ``moving_variance = (running_std + e)**2 - epsilon``, with ``e`` the
    keras_bn layer's epsilon and ``epsilon`` the new layer's. The stock layer
    normalizes one feature axis, so the keras_bn layer must be mode 0 with a
    single feature axis (``axis`` an int, or ``None`` on samples of rank 1).

    Args:
        layer: A built `keras_bn.BatchNormalization`.
        epsilon: The stock layer's epsilon; default the keras_bn layer's.
            The conversion needs ``(running_std + e)**2 >= epsilon``.

    A renorm layer becomes a stock one with ``renorm=True``, the same
    clipping, and ``renorm_momentum`` the layer's (``momentum`` where it is
    None: its ``r`` and ``d`` then follow the running estimates, which
    Keras' two rates reproduce when equal); ``renorm_stddev`` is
    ``renorm_std + e`` (``running_std + e`` without ``renorm_momentum``) and
    ``moving_stddev`` ``sqrt(moving_variance + epsilon)``.

    Returns:
        A built `keras.layers.BatchNormalization` with the converted weights,
        the same momentum, center, scale, regularizers, constraints, dtype,
        name and trainability.
    """
    if not isinstance(layer, BatchNormalization):
        raise TypeError(
            "layer: expected a keras_bn.BatchNormalization, got "
            f"{type(layer).__name__}."
        )
    if layer.mode != 0:
        what = {1: "samplewise", 2: "the batch's statistics at inference too"}
        raise ValueError(
            f"layer: '{layer.name}' has mode={layer.mode} ({what[layer.mode]}); "
            "keras.layers.BatchNormalization computes mode 0 only."
        )
    if layer.renorm and not _stock_renorm():
        raise ValueError(
            f"layer: '{layer.name}' renormalizes (renorm=True); "
            f"keras.layers.BatchNormalization of Keras {keras.__version__} has "
            "no renorm (later releases have)."
        )
    rank = _built_input_rank(layer)
    feature_axes = layer.feature_axes(rank)
    if len(feature_axes) != 1:
        raise ValueError(
            f"layer: '{layer.name}' keeps statistics over the feature axes "
            f"{feature_axes} (axis={layer.axis!r}, inputs of rank {rank}); "
            "keras.layers.BatchNormalization keeps them over one axis only."
        )
    if epsilon is None:
        epsilon = layer.epsilon
    epsilon = _validation.number(
        "epsilon", epsilon, expected="None or a positive finite number", positive=True
    )
    # Converted before the new layer exists: a failure leaves nothing behind.
    moving_variance = convert_running_statistic(
        layer.running_std.numpy(),
        "std",
        layer.epsilon,
        "variance",
        epsilon,
        f"Layer '{layer.name}'",
    )
    renorm = {}
    if layer.renorm:
        renorm = dict(
            renorm=True,
            renorm_clipping=dict(layer.renorm_clipping),
            renorm_momentum=(
                layer.momentum
                if layer.renorm_momentum is None
                else layer.renorm_momentum
            ),
        )
    converted = keras.layers.BatchNormalization(
        axis=feature_axes[0],
        momentum=layer.momentum,
        epsilon=epsilon,
        **renorm,
        **_shared_options(layer),
    )
    _build_for_axis(converted, rank, feature_axes[0], moving_variance.shape[0])
    gamma, beta = _affine(layer)
    weights = _weight_list(
        gamma, beta, np.asarray(layer.running_mean.numpy()), moving_variance
    )
    if layer.renorm:
        own = layer.renorm_momentum is not None
        renorm_mean = layer.renorm_mean if own else layer.running_mean
        renorm_std = layer.renorm_std if own else layer.running_std
        weights += [
            np.sqrt(moving_variance.astype("float64") + epsilon),
            np.asarray(renorm_mean.numpy()),
            np.asarray(renorm_std.numpy(), "float64") + layer.epsilon,
        ]
    converted.set_weights(weights)
    return converted


def from_torch(
    module: Any, *, axis: int = 1, momentum: float | None = None
) -> BatchNormalization:
    """A `keras_bn.BatchNormalization` equal at inference to a PyTorch one.

    PyTorch keeps ``running_var`` and normalizes with ``sqrt(running_var +
    eps)``; the layer gets ``running_std = sqrt(running_var + eps) - eps``
    and ``epsilon=eps``. PyTorch updates with ``new = (1 - m) * old + m *
    batch``, so the layer's momentum is ``1 - m``. (PyTorch feeds the
    unbiased batch variance into its update, the seed the biased one: the
    two agree at inference, not step for step in training.)

    Args:
        module: A `torch.nn.BatchNorm1d`, `BatchNorm2d` or `BatchNorm3d` with
            running statistics (``track_running_stats=True``).
        axis: The feature axis of the Keras inputs: 1, PyTorch's channels
            first layout (default), or -1 for channels-last data.
        momentum: The layer's momentum. Required when the module's momentum
            is None (a cumulative average over all batches, which the layer
            does not keep; `keras_bn.recompute_statistics` computes one);
            otherwise it defaults to ``1 - module.momentum``.

    Returns:
        A `keras_bn.BatchNormalization` in the module's dtype that builds on
        its first call (BatchNorm1d takes inputs of rank 2 or 3), with the
        converted weights; ``scale`` and ``center`` follow the module's
        ``weight`` and ``bias``.
    """
    try:
        import torch
    except ImportError:
        raise TypeError(
            "module: expected a torch.nn.BatchNorm1d/2d/3d, but PyTorch is not "
            "installed."
        ) from None
    kinds = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    if not isinstance(module, kinds):
        raise TypeError(
            "module: expected a torch.nn.BatchNorm1d, BatchNorm2d or BatchNorm3d, "
            f"got {type(module).__name__}."
        )
    if module.running_mean is None or module.running_var is None:
        raise ValueError(
            "module: track_running_stats=False normalizes with the batch "
            "statistics at inference too; keras_bn.BatchNormalization has no "
            "such mode. Use a module with running statistics."
        )
    if momentum is None:
        if module.momentum is None:
            raise ValueError(
                "momentum: the module's momentum is None (a cumulative average); "
                "pass the keras_bn momentum to use, e.g. momentum=0.9, and "
                "keras_bn.recompute_statistics for a cumulative average."
            )
        momentum = 1.0 - module.momentum
    momentum = _validation.number(
        "momentum",
        momentum,
        expected="None or a number in [0, 1]",
        minimum=0,
        maximum=1,
    )

    def array(tensor):
        return None if tensor is None else tensor.detach().cpu().double().numpy()

    running_std = convert_running_statistic(
        array(module.running_var), "variance", module.eps, "std", module.eps, "module"
    )
    # Built on the first call, when the input's rank is known; the weights
    # apply then.
    return BatchNormalization(
        epsilon=module.eps,
        momentum=momentum,
        weights=_weight_list(
            array(module.weight),
            array(module.bias),
            array(module.running_mean),
            running_std,
        ),
        axis=axis,
        center=module.bias is not None,
        scale=module.weight is not None,
        dtype=str(module.running_mean.dtype).removeprefix("torch."),
    )


# -- whole models ------------------------------------------------------------------

# What the reports call the two classes: both are named BatchNormalization.
_KERAS_BN_NAME = "keras_bn.BatchNormalization"
_KERAS_NAME = "keras.layers.BatchNormalization"


@dataclasses.dataclass(frozen=True)
class SwapReport:
    """What `model_from_keras` or `model_to_keras` did, by layer.

    A layer is named by its path: the names of the nested models it sits in
    and its own, joined by ``/`` (``"block/bn"``); a layer of the model
    itself by its name alone; one inside another layer (a wrapper) by that
    layer's path and its own name. A layer used in several places is listed
    once, at the first.

    Attributes:
        swapped: Batch Normalization -> the class that replaces it in the
            copy, ``"keras_bn.BatchNormalization"`` or
            ``"keras.layers.BatchNormalization"``.
        kept: Batch Normalization -> why the copy keeps it as it is.
    """

    swapped: dict[str, str]
    kept: dict[str, str]


def model_from_keras(model: keras.Model) -> tuple[keras.Model, SwapReport]:
    """A copy of ``model`` with `keras_bn.BatchNormalization` layers.

    Every `keras.layers.BatchNormalization` of the model, of the Sequential
    and functional models nested in it included, becomes the layer that
    `from_keras` makes of it (equal at inference, the same name); every
    other layer is a copy with the same weights, and the copy is laid out
    and named as ``model`` is (shared layers stay shared). A subclass of
    the stock layer is kept as it is (`from_keras` would drop what the
    subclass adds), and so is a Batch Normalization inside another layer (a
    wrapper such as `keras.layers.TimeDistributed`, or a custom layer),
    which is copied whole; the report says which and why. A stock layer
    whose statistics the seed's form cannot hold (a variance of at most
    ``-epsilon``) is kept too, with `from_keras`' message.

    ``model`` itself is not changed. A compiled model's copy is compiled
    from its compile config, as `keras.models.clone_model` does: the
    optimizer starts afresh.

    Args:
        model: A built `keras.Sequential` or functional `keras.Model`.

    Returns:
        ``(copy, report)``: the new model (of the same kind) and a
        `SwapReport`.

    Raises:
        TypeError: for anything other than a Sequential or functional
            model, or one that holds a subclassed model.
        ValueError: for a Sequential model that is not built.
    """
    return _swap_model(
        model, keras.layers.BatchNormalization, from_keras, _KERAS_BN_NAME, None
    )


def model_to_keras(model: keras.Model) -> tuple[keras.Model, SwapReport]:
    """A copy of ``model`` with stock `keras.layers.BatchNormalization` layers.

    The reverse of `model_from_keras`: every `keras_bn.BatchNormalization`
    that the stock layer can compute becomes the layer that `to_keras`
    makes of it (equal at inference, the same name and epsilon); every other
    layer is a copy with the same weights. A model whose every Batch
    Normalization was swapped saves as a `.keras` file that loads without
    keras_bn.

    Kept as they are, with the reason in the report: mode 1 and mode 2
    layers, layers whose statistics are per position of several feature
    axes (``axis=None`` on inputs of rank above 2, or a tuple of axes),
    anything else `to_keras` refuses (a ``running_std`` below
    ``sqrt(epsilon) - epsilon``, whose variance would be negative),
    subclasses of `keras_bn.BatchNormalization`, and Batch Normalizations
    inside other layers.

    ``model`` itself is not changed; a compiled model's copy is compiled
    from its compile config.

    Args:
        model: A built `keras.Sequential` or functional `keras.Model`.

    Returns:
        ``(copy, report)``: the new model (of the same kind) and a
        `SwapReport`.

    Raises:
        TypeError: for anything other than a Sequential or functional
            model, or one that holds a subclassed model.
        ValueError: for a Sequential model that is not built.
    """
    return _swap_model(
        model, BatchNormalization, to_keras, _KERAS_NAME, _to_keras_problem
    )


def _swap_model(
    model: Any,
    source: type[Any],
    convert_layer: Callable[[Any], keras.layers.Layer],
    target_name: str,
    problem: Callable[[Any], str | None] | None,
) -> tuple[keras.Model, SwapReport]:
    """``model`` copied with each layer of class ``source`` converted by
    ``convert_layer``; ``problem`` tells why a layer cannot be, or None."""
    # Everything that can fail on the model's own terms is found before
    # anything is built.
    _check_model(model, None)
    layers = list(_walk(model, ""))
    swaps, swapped, kept = {}, {}, {}
    for path, layer in layers:
        if isinstance(layer, source):
            reason = _swap_problem(layer, source, problem)
            if reason is None:
                try:
                    swaps[id(layer)] = convert_layer(layer)
                except ValueError as error:
                    reason = str(error).removeprefix("layer: ")
            if reason is None:
                swapped[path] = target_name
            else:
                kept[path] = reason
            continue
        for inner in _sublayers(layer):
            if isinstance(inner, source):
                kept[f"{path}/{inner.name}"] = (
                    f"inside '{path}' ({type(layer).__name__}), which is copied "
                    "as it is"
                )
    copy = _Copier(swaps).copy(model)
    return copy, SwapReport(swapped=swapped, kept=kept)


def _check_model(model: Any, path: str | None) -> None:
    """Raises unless ``model`` is a built Sequential or functional model;
    ``path`` is a nested model's, None for the argument itself."""
    nested = "" if path is None else f" holds '{path}', which is"
    if not isinstance(model, keras.Model):
        raise TypeError(
            "model: expected a Sequential or functional keras.Model, got "
            f"{type(model).__name__}."
        )
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ValueError(
                f"model:{nested or ' the Sequential model'} '{model.name}' must "
                "be built with a known input (start it with keras.Input, or call "
                "it once)."
            )
        return
    # A functional model keeps its layer graph there (as folding reads it);
    # a subclassed one has only its Python code, which no copy can rewire.
    if not hasattr(model, "_nodes_by_depth"):
        raise TypeError(
            "model: expected a Sequential or functional keras.Model"
            + ("" if path is None else " (also for the models nested in it)")
            + f", got {type(model).__name__}"
            + ("" if path is None else f" as '{path}'")
            + ", a subclassed model: its layers have no graph to rebuild."
        )


def _walk(
    model: Any, prefix: str, seen: set[int] | None = None
) -> Iterator[tuple[str, Any]]:
    """``(path, layer)`` for each layer of ``model`` and of the models nested
    in it, each layer once; checks the nested models on the way."""
    seen = set() if seen is None else seen
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or id(layer) in seen:
            continue
        seen.add(id(layer))
        path = prefix + layer.name
        if isinstance(layer, keras.Model):
            _check_model(layer, path)
            yield from _walk(layer, path + "/", seen)
        else:
            yield path, layer


def _sublayers(layer: Any) -> list:
    """The layers inside ``layer`` (a wrapper's, a custom layer's). Keras 3
    lists them publicly for models only; every layer tracks them for
    ``trainable`` in ``_flatten_layers``."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    return list(flatten(include_self=False, recursive=True))


def _swap_problem(
    layer: Any, source: type[Any], problem: Callable[[Any], str | None] | None
) -> str | None:
    if type(layer) is not source:
        parent = _KERAS_BN_NAME if source is BatchNormalization else _KERAS_NAME
        return (
            f"{type(layer).__name__} is a subclass of {parent}, whose own "
            "behaviour the conversion would drop"
        )
    return None if problem is None else problem(layer)


def _to_keras_problem(layer: BatchNormalization) -> str | None:
    """Why the stock layer cannot compute ``layer``, or None where only
    `to_keras` can tell (from the weights' values)."""
    if layer.mode == 1:
        return (
            "mode 1 (samplewise: each sample normalized with its own statistics); "
            "keras.layers.BatchNormalization has mode 0 only"
        )
    if layer.mode == 2:
        return (
            "mode 2 (the batch's statistics at inference too); "
            "keras.layers.BatchNormalization has mode 0 only"
        )
    rank = _built_input_rank(layer)
    feature_axes = layer.feature_axes(rank)
    if len(feature_axes) != 1:
        return (
            f"statistics per position of the feature axes {feature_axes} "
            f"(axis={layer.axis!r}, inputs of rank {rank}); "
            "keras.layers.BatchNormalization keeps them over one axis"
        )
    return None


class _Copier:
    """Copies models with `keras.models.clone_model`, which calls
    ``_clone`` for each layer; nested models are copied here, not by
    clone_model's ``recursive=True``, so that their inputs keep their names
    (clone_model names new inputs after their tensors) and layers shared
    between a model and a nested one stay shared."""

    def __init__(self, swaps: dict[int, keras.layers.Layer]) -> None:
        self.swaps = swaps
        self.pairs: dict[int, tuple[Any, Any]] = {}

    def copy(self, model: Any) -> keras.Model:
        copy = self._model(model)
        # Weights once every layer is built (a layer first called in the
        # new graph builds there).
        for original, new in self.pairs.values():
            if isinstance(original, keras.Model):
                # clone_model passes trainable on for Sequential models only.
                if not original.trainable:
                    new.trainable = False
            else:
                new.set_weights(original.get_weights())
        if not model.trainable:
            copy.trainable = False
        return copy

    def _model(self, model: Any) -> keras.Model:
        if isinstance(model, keras.Sequential):
            return keras.models.clone_model(model, clone_function=self._clone)
        return keras.models.clone_model(
            model,
            input_tensors=keras.tree.map_structure(_input_like(model), model.input),
            clone_function=self._clone,
        )

    def _clone(self, layer: Any) -> Any:
        if id(layer) in self.swaps:
            return self.swaps[id(layer)]
        if id(layer) not in self.pairs:
            if isinstance(layer, keras.Model):
                new = self._model(layer)
            else:
                new = layer.__class__.from_config(layer.get_config())
            self.pairs[id(layer)] = (layer, new)
        return self.pairs[id(layer)][1]


def _input_like(model: Any) -> Callable[[Any], Any]:
    """A function from each input tensor of the functional ``model`` to a
    new one from a copy of its input layer (name, shape, dtype, sparse,
    optional)."""
    input_layers = {
        id(layer.output): layer
        for layer in model.layers
        if isinstance(layer, keras.layers.InputLayer)
    }

    def like(tensor):
        layer = input_layers.get(id(tensor))
        if layer is None:  # what clone_model itself would make
            return keras.Input(
                batch_shape=tensor.shape, dtype=tensor.dtype, name=tensor.name
            )
        return layer.__class__.from_config(layer.get_config()).output

    return like
