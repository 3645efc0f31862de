"""Checks for the numbers, flags and shapes that keras_bn's functions take.

One rule for every argument: a value of the wrong *type* (a string for a
number, a float or a bool for an int, an int for a flag) raises
``TypeError``; a value of the right type outside what the argument allows
(a negative epsilon, a momentum of 1.5, a mode of 2) raises ``ValueError``.
Every message names the argument, says what was expected and shows what
came: ``"momentum: expected a number in [0, 1], got 1.5."``.

Each check returns the value in its plain Python form (``float``, ``int``,
``bool``, a tuple of ints), so that configs hold no NumPy scalars.
"""

import math
import numbers

import keras
import numpy as np

__all__ = [
    "epsilon_fits",
    "feature_axes",
    "flag",
    "int_tuple",
    "integer",
    "number",
    "numpy_dtype",
    "one_of",
    "option_combinations",
    "stored_array",
    "weight_list",
    "weight_shapes",
]


def _fail(error, name, expected, value):
    return error(f"{name}: expected {expected}, got {value!r}.")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def number(name, value, *, expected, minimum=None, maximum=None, positive=False):
    """A finite real number (not a bool) in ``[minimum, maximum]``, and
    above 0 with ``positive``; ``expected`` describes it in messages."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise _fail(TypeError, name, expected, value)
    if (
        not math.isfinite(value)
        or (positive and value <= 0)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise _fail(ValueError, name, expected, value)
    return float(value)


def integer(name, value, *, expected, minimum=None, allow_none=False):
    """An int (not a bool) of at least ``minimum``; None too with
    ``allow_none``."""
    if value is None and allow_none:
        return None
    if not _is_int(value):
        raise _fail(TypeError, name, expected, value)
    if minimum is not None and value < minimum:
        raise _fail(ValueError, name, expected, value)
    return int(value)


def flag(name, value):
    """True or False, nothing else (not 0 or 1, not a string)."""
    if not isinstance(value, bool):
        raise _fail(TypeError, name, "True or False", value)
    return value


def one_of(name, value, choices, *, expected):
    """One of ``choices`` (ints or strings); a bool is not taken for an int."""
    kinds = tuple({numbers.Integral if _is_int(c) else type(c) for c in choices})
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise _fail(TypeError, name, expected, value)
    if value not in choices:
        raise _fail(ValueError, name, expected, value)
    return int(value) if _is_int(value) else value


def int_tuple(name, value, *, expected, minimum=None, allow_int=False, distinct=False):
    """A non-empty tuple or list of ints, each at least ``minimum`` (and no
    two equal with ``distinct``), as a tuple; with ``allow_int`` a single
    int, kept an int."""
    if allow_int and _is_int(value):
        if minimum is not None and value < minimum:
            raise _fail(ValueError, name, expected, value)
        return int(value)
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
        raise _fail(TypeError, name, expected, value)
    if not value or (minimum is not None and min(value) < minimum):
        raise _fail(ValueError, name, expected, value)
    if distinct and len(set(value)) != len(value):
        raise _fail(ValueError, name, f"distinct axes ({expected})", value)
    return tuple(int(v) for v in value)


def numpy_dtype(dtype):
    """The NumPy dtype for a Keras dtype name (bfloat16 comes from ml_dtypes,
    which Keras depends on)."""
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def stored_array(name, value, dtype):
    """``value`` as a NumPy array of ``dtype``, the dtype of the variable it
    is meant for; refuses complex and non-numeric values, and values that are
    not finite once stored in ``dtype`` (NaN, inf, or beyond its range)."""
    try:
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            array = array.astype("float64")
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"weights: {name} must be a numeric array, got "
            f"{type(value).__name__} ({error})."
        ) from None
    if array.dtype.kind == "c":
        raise TypeError(
            f"weights: {name} must be a real array, got a complex one "
            f"({array.dtype}); its imaginary part would be dropped."
        )
    target = numpy_dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        stored = array.astype(target)
    bad = ~np.isfinite(stored)
    if np.any(bad):
        if np.all(np.isfinite(array[bad])):
            largest = np.max(np.abs(array[bad]))
            what = (
                f"values beyond the range of {target.name} (largest "
                f"magnitude {largest:g}), which would be stored as inf"
            )
        else:
            what = f"{int(np.sum(bad))} non-finite values"
        raise ValueError(
            f"weights: {name} must be finite in {target.name}, the dtype it "
            f"is stored in; got {what}."
        )
    return stored


def epsilon_fits(epsilon, dtype, policy_name):
    """epsilon is kept as a Python float, and the statistics are computed in
    ``dtype``: an epsilon that overflows to inf or underflows to 0 there
    would make every std inf, or let a constant feature divide by 0."""
    if not keras.backend.is_float_dtype(dtype):
        return
    with np.errstate(over="ignore", under="ignore"):
        stored = np.asarray(epsilon, dtype=numpy_dtype(dtype))
    if not (np.isfinite(stored) and stored > 0):
        raise ValueError(
            f"epsilon: expected a positive number that stays finite and "
            f"positive in {dtype}, the dtype this layer computes its "
            f"statistics in (dtype policy {policy_name!r}), got "
            f"{epsilon!r}, which is {stored} in {dtype}."
        )


def weight_list(names, weights, dtypes):
    """A layer's weight list, ``names`` in order: length, type, finiteness
    and sign checks that need no built layer.

    Each array is checked in ``dtypes[i]``, the dtype it will be stored in:
    a float64 value beyond that dtype's range would be stored as inf.
    Returns the weights as NumPy arrays of those dtypes."""
    if not isinstance(weights, (list, tuple)):
        raise TypeError(
            f"weights: expected a list of {len(names)} arrays {names}, "
            f"got {type(weights).__name__}."
        )
    if len(weights) != len(names):
        raise ValueError(
            f"weights: expected a list of {len(names)} arrays {names}, "
            f"got {len(weights)} arrays."
        )
    arrays = [
        stored_array(name, value, dtype)
        for name, value, dtype in zip(names, weights, dtypes)
    ]
    for name, array in zip(names, arrays):
        if name.endswith("_std") and np.any(array < 0):
            raise ValueError(
                f"weights: {name} is a standard deviation and must be >= 0 "
                f"(so that {name} + epsilon > 0), got minimum {array.min()}."
            )
    return arrays


def weight_shapes(names, arrays, shape):
    """Every array of the weight list has ``shape``."""
    for name, array in zip(names, arrays):
        if array.shape != shape:
            raise ValueError(
                f"weights: {name} must have shape {shape}, got {array.shape}."
            )


def feature_axes(axis, ndim):
    """A layer's ``axis`` (None, an int or a tuple of ints, checked by
    `int_tuple`) as the sorted positive feature axes of inputs of rank
    ``ndim``: None keeps every axis but the batch axis 0."""
    if axis is None:
        return tuple(range(1, ndim))
    axes = (axis,) if isinstance(axis, int) else axis
    positive = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"axis: {a} is out of range for inputs of rank {ndim} (axis={axis!r})."
            )
        positive.append(a % ndim)
    if 0 in positive:
        raise ValueError(
            f"axis: the batch axis 0 cannot be a feature axis "
            f"(axis={axis!r}, inputs of rank {ndim})."
        )
    if len(set(positive)) != len(positive):
        raise ValueError(
            f"axis: {axis!r} names the same axis twice for inputs of rank {ndim}."
        )
    return tuple(sorted(positive))


def option_combinations(
    mode, synchronized, virtual_batch_size, epsilon_in_root, skip_non_finite=False
):
    """The layer's options that each check out alone but not together
    (ValueError: each is of the right type)."""
    if mode == 2:
        # Keras 1.x's mode 2 had none of these, and skip_non_finite guards a
        # running update that mode 2 does not make.
        for name, value in [
            ("synchronized", synchronized),
            ("virtual_batch_size", virtual_batch_size is not None),
            ("skip_non_finite", skip_non_finite),
        ]:
            if value:
                raise ValueError(
                    f"{name}: not with mode=2 (Keras 1.x's featurewise "
                    "normalization with the batch's statistics in both phases)."
                )
    if synchronized and keras.backend.backend() == "torch":
        raise ValueError(
            "synchronized=True: Keras does not distribute training on the "
            "PyTorch backend, so there are no replicas to synchronize. Use "
            "the TensorFlow backend (tf.distribute) or JAX "
            "(keras.distribution), or synchronized=False."
        )
    if virtual_batch_size is not None and synchronized:
        raise ValueError(
            "virtual_batch_size: ghost batches are per-replica by "
            "definition; it cannot be combined with synchronized=True."
        )
    if epsilon_in_root and mode != 1:
        raise ValueError(
            "samplewise_epsilon_in_root=True: applies to mode 1 "
            f"(samplewise) only, got mode={mode}; mode 0 already takes "
            "epsilon inside the root of its std."
        )


RENORM_CLIPPING_KEYS = ("rmax", "rmin", "dmax")


def renorm_arguments(renorm, renorm_clipping, renorm_momentum, mode):
    """Batch Renormalization's arguments, checked: ``(renorm, clipping,
    renorm_momentum)``, the clipping a dict of floats (empty: no clipping).
    Keys and limits as Keras' own layer takes them."""
    renorm = flag("renorm", renorm)
    if not renorm:
        for name, value in [
            ("renorm_clipping", renorm_clipping),
            ("renorm_momentum", renorm_momentum),
        ]:
            if value is not None:
                raise ValueError(
                    f"{name}: applies with renorm=True only, got {value!r} "
                    "with renorm=False."
                )
        return False, None, None
    if mode != 0:
        raise ValueError(
            f"renorm=True: applies to mode 0 (featurewise) only, got mode={mode}; "
            "mode 1 normalizes each sample with its own statistics and keeps no "
            "running estimates in its formula, and mode 2 uses the batch's in "
            "both phases."
        )
    clipping = {} if renorm_clipping is None else renorm_clipping
    if not isinstance(clipping, dict):
        raise _fail(
            TypeError,
            "renorm_clipping",
            f"None or a dict with keys among {list(RENORM_CLIPPING_KEYS)}",
            renorm_clipping,
        )
    unknown = sorted(set(clipping) - set(RENORM_CLIPPING_KEYS), key=str)
    if unknown:
        raise ValueError(
            f"renorm_clipping: unknown keys {unknown}; expected keys among "
            f"{list(RENORM_CLIPPING_KEYS)}, got {renorm_clipping!r}."
        )
    clipping = {
        key: number(
            f"renorm_clipping[{key!r}]",
            value,
            expected="a finite number (dmax >= 0, rmin > 0)",
            minimum=0,
            positive=key == "rmin",
        )
        for key, value in clipping.items()
        if value is not None
    }
    if clipping.get("rmax", math.inf) < clipping.get("rmin", 0.0):
        raise ValueError(
            f"renorm_clipping: rmax must be >= rmin, got rmax={clipping['rmax']} "
            f"and rmin={clipping['rmin']}."
        )
    if renorm_momentum is not None:
        renorm_momentum = number(
            "renorm_momentum",
            renorm_momentum,
            expected="None or a number in [0, 1]",
            minimum=0,
            maximum=1,
        )
    return True, clipping, renorm_momentum


def seed_arguments(input_shape, epsilon, mode, momentum, axis):
    """The layer's seed arguments and ``axis``, checked, as the layer keeps
    them."""
    if input_shape is not None:
        input_shape = int_tuple(
            "input_shape",
            input_shape,
            expected="the shape of one sample, a non-empty tuple of "
            "positive ints such as (64,)",
            minimum=1,
        )
    epsilon = number(
        "epsilon", epsilon, expected="a positive finite number", positive=True
    )
    mode = one_of(
        "mode",
        mode,
        (0, 1, 2),
        expected="0 (featurewise), 1 (samplewise) or 2 (featurewise, batch "
        "statistics in both phases)",
    )
    momentum = number(
        "momentum", momentum, expected="a number in [0, 1]", minimum=0, maximum=1
    )
    if axis is not None:
        axis = int_tuple(
            "axis",
            axis,
            expected="None, an int or a non-empty tuple of ints",
            allow_int=True,
            distinct=True,
        )
    return input_shape, epsilon, mode, momentum, axis
