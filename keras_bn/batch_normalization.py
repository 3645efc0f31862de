"""`keras_bn.BatchNormalization`: the 2015 Keras layer on Keras 3."""

import math
import numbers
import warnings

import keras
import numpy as np
from keras import constraints, initializers, ops, regularizers

from keras_bn import functional

__all__ = ["BatchNormalization"]


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _validate_epsilon(epsilon):
    if not _is_number(epsilon) or not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(
            f"epsilon: expected a positive finite number, got {epsilon!r}."
        )
    return float(epsilon)


def _validate_momentum(momentum):
    if not _is_number(momentum) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}.")
    return float(momentum)


def _validate_mode(mode):
    if isinstance(mode, bool) or mode not in (0, 1):
        raise ValueError(
            f"mode: expected 0 (featurewise) or 1 (samplewise), got {mode!r}."
        )
    return int(mode)


def _validate_input_shape(input_shape):
    if input_shape is None:
        return None
    if (
        not isinstance(input_shape, (tuple, list))
        or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
            for d in input_shape
        )
        or len(input_shape) == 0
    ):
        raise ValueError(
            "input_shape: expected the shape of one sample, a non-empty tuple "
            f"of positive ints such as (64,), got {input_shape!r}."
        )
    return tuple(int(d) for d in input_shape)


def _validate_axis(axis):
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, numbers.Integral) else axis
    if (
        isinstance(axis, bool)
        or not isinstance(axes, (tuple, list))
        or not axes
        or not all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes
        )
    ):
        raise ValueError(
            f"axis: expected None, an int or a non-empty tuple of ints, got {axis!r}."
        )
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis: expected distinct axes, got {axis!r}.")
    return (
        int(axes[0])
        if isinstance(axis, numbers.Integral)
        else tuple(int(a) for a in axes)
    )


def _validate_synchronized(synchronized):
    if not isinstance(synchronized, bool):
        raise TypeError(f"synchronized: expected True or False, got {synchronized!r}.")
    if synchronized and keras.backend.backend() == "torch":
        raise ValueError(
            "synchronized=True: Keras does not distribute training on the "
            "PyTorch backend, so there are no replicas to synchronize. Use "
            "the TensorFlow backend (tf.distribute) or JAX "
            "(keras.distribution), or synchronized=False."
        )
    return synchronized


def _validate_virtual_batch_size(virtual_batch_size, synchronized):
    if virtual_batch_size is None:
        return None
    if (
        not isinstance(virtual_batch_size, numbers.Integral)
        or isinstance(virtual_batch_size, bool)
        or virtual_batch_size < 1
    ):
        raise ValueError(
            "virtual_batch_size: expected None or a positive int, got "
            f"{virtual_batch_size!r}."
        )
    if synchronized:
        raise ValueError(
            "virtual_batch_size: ghost batches are per-replica by definition; "
            "it cannot be combined with synchronized=True."
        )
    return int(virtual_batch_size)


def _validate_samplewise_epsilon_in_root(value, mode):
    if not isinstance(value, bool):
        raise TypeError(
            f"samplewise_epsilon_in_root: expected True or False, got {value!r}."
        )
    if value and mode != 1:
        raise ValueError(
            "samplewise_epsilon_in_root=True: applies to mode 1 (samplewise) "
            f"only, got mode={mode}; mode 0 already takes epsilon inside the "
            "root of its std."
        )
    return value


def _sum_across_replicas(partial_sum):
    """All-reduces a per-replica sum under tf.distribute; on JAX the batch is
    one global (sharded) array already, so its sums are global as they are."""
    if keras.backend.backend() != "tensorflow":
        return partial_sum
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return partial_sum
    return context.all_reduce(tf.distribute.ReduceOp.SUM, partial_sum)


def _numpy_dtype(dtype):
    """The NumPy dtype for a Keras dtype name (bfloat16 comes from ml_dtypes,
    which Keras depends on)."""
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def _stored_array(name, value, dtype):
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
    target = _numpy_dtype(dtype)
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


@keras.saving.register_keras_serializable(package="keras_bn")
class BatchNormalization(keras.layers.Layer):
    """Batch Normalization with the 2015 Keras layer's semantics.

    Normalizes its input with the mean and standard deviation of the batch
    during training, and with running estimates of them at inference
    (Ioffe and Szegedy, 2015). This is the Keras 0.1.3 to 0.3.1 layer on
    Keras 3, with two upstream fixes (Keras 0.3.2 and 1.0): training
    normalizes with the batch statistics, and ``gamma`` starts at ones.

    The running estimates are a mean and a *standard deviation* (not a
    variance), kept as the seed kept them:

    - batch statistics: ``m = mean(x)``,
      ``std = sqrt(mean((x - m)**2) + epsilon)``;
    - mode 0 output: ``gamma * (x - m) / (std + epsilon) + beta`` in
      training, with ``running_mean`` and ``running_std`` in place of
      ``m`` and ``std`` at inference;
    - running estimates, after every training call in both modes:
      ``running = momentum * running + (1 - momentum) * batch``.

    Args:
        input_shape: Shape of one sample, without the batch axis. When given,
            the layer is built at once and can open a `Sequential` model;
            otherwise it builds on its first call like any Keras layer.
        epsilon: Positive number added inside the std's square root and to
            the std in the denominator. Default 1e-6, as in the seed. It
            must stay finite and positive in the dtype the statistics are
            computed in (float32 unless the layer's dtype is float64).
        mode: 0 for featurewise normalization (statistics over the batch);
            1 for samplewise normalization (each sample over its last axis,
            in both phases; the running estimates still update).
        momentum: In [0, 1], the weight of the old value in the running
            estimates' update. 1 freezes them; 0 keeps the last batch's.
        weights: Optional initial weight list, as `set_weights()` takes it:
            ``[gamma, beta, running_mean, running_std]``: real values, finite
            in the layer's variable dtype.
        axis: `None` (default, the seed's per-activation statistics: reduce
            over the batch axis only; weights of the shape of one sample), or
            the int or tuple of feature axes to keep (reduce over all other
            axes: per-feature-map statistics, e.g. ``axis=-1`` after a
            channels-last convolution). The batch axis 0 cannot be a feature
            axis.
        center: If true, add the offset ``beta``; otherwise it is left out
            (and out of the weight list).
        scale: If true, multiply by ``gamma``; otherwise it is left out.
        gamma_initializer: Initializer for ``gamma``, default ``"ones"``. Use
            ``keras.initializers.RandomUniform(-0.05, 0.05)`` for the seed's
            original start.
        beta_initializer: Initializer for ``beta``, default ``"zeros"``.
        running_mean_initializer: Default ``"zeros"``.
        running_std_initializer: Default ``"ones"``.
        gamma_regularizer, beta_regularizer: Optional regularizers.
        gamma_constraint, beta_constraint: Optional constraints.
        skip_non_finite: False (default, the seed): the running estimates
            follow the batch statistics whatever they are, so one batch
            holding a NaN or inf makes them NaN for good. True: every
            position whose value is NaN or +-inf is left out, per feature,
            of the statistics that update the running estimates (as a
            masked position is); a feature with no finite position in the
            batch, or whose statistics still come out non-finite (sums
            beyond the dtype's range), keeps its estimates. The training
            output still normalizes with the statistics of the whole batch,
            so it is NaN where the batch's are. Costs an extra pass over the
            batch in training (a finiteness mask and masked sums); nothing
            at inference.
        samplewise_epsilon_in_root: Mode 1 only (a ValueError with mode 0,
            whose std has epsilon inside the root already). False (default,
            the seed, Keras 0.x): each sample's std is ``sqrt(var)``, and
            the output ``gamma * (x - m) / (sqrt(var) + epsilon) + beta``.
            True (Keras 1.x): ``sqrt(var + epsilon)``, so the output is
            ``gamma * (x - m) / (sqrt(var + epsilon) + epsilon) + beta``,
            in both phases, with the matching closed-form gradient. The
            running estimates update as the seed's in either case.
        **kwargs: Base layer keyword arguments (``name``, ``dtype``,
            ``trainable``, ...).

    Call arguments:
        inputs: A tensor whose non-batch shape fits the layer.
        training: Whether to normalize with the batch statistics and update
            the running estimates. A layer with ``trainable=False`` always
            runs in inference mode and leaves its running estimates alone.
        mask: Optional boolean tensor of the input's shape without its last
            axis (or of its full shape); masked positions enter neither the
            batch statistics nor the running estimates.

    Weights:
        ``get_weights()`` returns ``[gamma, beta, running_mean,
        running_std]``, without ``gamma`` when ``scale=False`` and without
        ``beta`` when ``center=False``.

    Reference:
        - [Ioffe and Szegedy, 2015](https://arxiv.org/abs/1502.03167).
    """

    def __init__(
        self,
        input_shape=None,
        epsilon=1e-6,
        mode=0,
        momentum=0.9,
        weights=None,
        *,
        axis=None,
        center=True,
        scale=True,
        gamma_initializer="ones",
        beta_initializer="zeros",
        running_mean_initializer="zeros",
        running_std_initializer="ones",
        gamma_regularizer=None,
        beta_regularizer=None,
        gamma_constraint=None,
        beta_constraint=None,
        synchronized=False,
        virtual_batch_size=None,
        samplewise_epsilon_in_root=False,
        skip_non_finite=False,
        **kwargs,
    ):
        input_shape = _validate_input_shape(input_shape)
        self.epsilon = _validate_epsilon(epsilon)
        self.mode = _validate_mode(mode)
        self.momentum = _validate_momentum(momentum)
        self.axis = _validate_axis(axis)
        self.center = bool(center)
        self.scale = bool(scale)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_initializer = initializers.get(beta_initializer)
        self.running_mean_initializer = initializers.get(running_mean_initializer)
        self.running_std_initializer = initializers.get(running_std_initializer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.beta_constraint = constraints.get(beta_constraint)
        self.synchronized = _validate_synchronized(synchronized)
        self.virtual_batch_size = _validate_virtual_batch_size(
            virtual_batch_size, self.synchronized
        )
        self.samplewise_epsilon_in_root = _validate_samplewise_epsilon_in_root(
            samplewise_epsilon_in_root, self.mode
        )
        if not isinstance(skip_non_finite, bool):
            raise TypeError(
                f"skip_non_finite: expected True or False, got {skip_non_finite!r}."
            )
        self.skip_non_finite = skip_non_finite
        if input_shape is not None:
            kwargs["input_shape"] = input_shape
        with warnings.catch_warnings():
            # input_shape is the seed's own API here, not a misuse.
            warnings.filterwarnings("ignore", message=".*input_shape.*")
            super().__init__(**kwargs)
        # Both need the dtype policy, which the base constructor sets.
        self._check_epsilon_fits_dtype()
        if weights is not None:
            weights = self._check_weight_values(
                weights, [self.variable_dtype] * len(self._weight_names())
            )
        self.input_shape = input_shape
        self.supports_masking = True
        self._initial_weights = weights
        if input_shape is not None:
            self.build((None, *input_shape))

    # -- building ----------------------------------------------------------

    def _feature_axes(self, ndim):
        """Sorted positive feature axes for an input of rank ``ndim``."""
        if self.axis is None:
            return tuple(range(1, ndim))
        axes = (self.axis,) if isinstance(self.axis, int) else self.axis
        positive = []
        for a in axes:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"axis: {a} is out of range for inputs of rank {ndim} "
                    f"(axis={self.axis!r})."
                )
            positive.append(a % ndim)
        if 0 in positive:
            raise ValueError(
                f"axis: the batch axis 0 cannot be a feature axis "
                f"(axis={self.axis!r}, inputs of rank {ndim})."
            )
        if len(set(positive)) != len(positive):
            raise ValueError(
                f"axis: {self.axis!r} names the same axis twice for inputs of "
                f"rank {ndim}."
            )
        return tuple(sorted(positive))

    def build(self, input_shape):
        if self.built:
            # Built at construction from input_shape; a second build (as
            # Keras' loader does) must not create the weights again.
            return
        input_shape = tuple(input_shape)
        ndim = len(input_shape)
        if ndim < 2:
            raise ValueError(
                "inputs: expected a batch of samples of rank at least 2, "
                f"got shape {input_shape}."
            )
        feature_axes = self._feature_axes(ndim)
        param_shape = tuple(input_shape[a] for a in feature_axes)
        if any(d is None for d in param_shape):
            raise ValueError(
                f"inputs: the feature axes {feature_axes} need known sizes, "
                f"got shape {input_shape}."
            )
        self._check_epsilon_fits_dtype()
        if self._initial_weights is not None:
            self._check_weight_shapes(self._initial_weights, param_shape)

        if self.scale:
            self.gamma = self.add_weight(
                shape=param_shape,
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=param_shape,
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                trainable=True,
                autocast=False,
            )
        self.running_mean = self.add_weight(
            shape=param_shape,
            name="running_mean",
            aggregation="mean",
            initializer=self.running_mean_initializer,
            trainable=False,
            autocast=False,
        )
        self.running_std = self.add_weight(
            shape=param_shape,
            name="running_std",
            aggregation="mean",
            initializer=self.running_std_initializer,
            trainable=False,
            autocast=False,
        )
        self.input_spec = keras.InputSpec(
            ndim=ndim, axes={a: input_shape[a] for a in feature_axes}
        )
        self._reduction_axes = tuple(a for a in range(ndim) if a not in feature_axes)
        self._trailing_features = feature_axes == tuple(
            range(ndim - len(feature_axes), ndim)
        )
        self._broadcast_shape = tuple(
            input_shape[a] if a in feature_axes else 1 for a in range(ndim)
        )
        self.built = True
        if self._initial_weights is not None:
            self._assign_weights(self._initial_weights)
            self._initial_weights = None

    def compute_output_shape(self, input_shape):
        return input_shape

    # -- weights -------------------------------------------------------------

    def _weight_names(self):
        return (
            (["gamma"] if self.scale else [])
            + (["beta"] if self.center else [])
            + ["running_mean", "running_std"]
        )

    def _ordered_weights(self):
        return [getattr(self, name) for name in self._weight_names()]

    def _check_epsilon_fits_dtype(self):
        """epsilon is kept as a Python float, and the statistics are computed
        in ``statistics_dtype(compute_dtype)``: an epsilon that overflows to
        inf or underflows to 0 there would make every std inf, or let a
        constant feature divide by 0."""
        dtype = functional.statistics_dtype(self.compute_dtype)
        if not keras.backend.is_float_dtype(dtype):
            return
        with np.errstate(over="ignore", under="ignore"):
            stored = np.asarray(self.epsilon, dtype=_numpy_dtype(dtype))
        if not (np.isfinite(stored) and stored > 0):
            raise ValueError(
                f"epsilon: expected a positive number that stays finite and "
                f"positive in {dtype}, the dtype this layer computes its "
                f"statistics in (dtype policy {self.dtype_policy.name!r}), got "
                f"{self.epsilon!r}, which is {stored} in {dtype}."
            )

    def _check_weight_values(self, weights, dtypes):
        """Length, type, finiteness and sign checks that need no built layer.

        Each array is checked in ``dtypes[i]``, the dtype it will be stored
        in: a float64 value beyond that dtype's range would be stored as
        inf. Returns the weights as NumPy arrays of those dtypes."""
        names = self._weight_names()
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
        arrays = []
        for name, value, dtype in zip(names, weights, dtypes):
            arrays.append(_stored_array(name, value, dtype))
        running_std = arrays[-1]
        if np.any(running_std < 0):
            raise ValueError(
                "weights: running_std is a standard deviation and must be >= 0 "
                f"(so that running_std + epsilon > 0), got minimum "
                f"{running_std.min()}."
            )
        return arrays

    def _check_weight_shapes(self, arrays, param_shape):
        for name, array in zip(self._weight_names(), arrays):
            if array.shape != param_shape:
                raise ValueError(
                    f"weights: {name} must have shape {param_shape}, got {array.shape}."
                )

    def _assign_weights(self, arrays):
        for variable, array in zip(self._ordered_weights(), arrays):
            variable.assign(array.astype(_numpy_dtype(variable.dtype)))

    def get_weights(self):
        """Returns ``[gamma, beta, running_mean, running_std]`` as NumPy arrays
        (without gamma or beta when ``scale`` or ``center`` is off)."""
        if not self.built:
            return []
        return [np.array(v.numpy()) for v in self._ordered_weights()]

    def set_weights(self, weights):
        """Sets ``[gamma, beta, running_mean, running_std]`` (without gamma or
        beta when ``scale`` or ``center`` is off). Everything is checked before
        anything is assigned: a failed call leaves the layer as it was."""
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' is not built yet: pass input_shape to the "
                "constructor, call build(), or pass the list as weights=."
            )
        arrays = self._check_weight_values(
            weights, [v.dtype for v in self._ordered_weights()]
        )
        self._check_weight_shapes(arrays, tuple(self.running_mean.shape))
        self._assign_weights(arrays)

    # -- the forward pass --------------------------------------------------

    def _param(self, variable, dtype):
        # Each reshape or cast is a Keras dispatch on every call (costly in
        # eager PyTorch): weights of the trailing axes broadcast as they are.
        if variable.dtype == dtype:
            value = variable.value
        else:
            value = ops.cast(variable, dtype)
        if self._trailing_features:
            return value
        return ops.reshape(value, self._broadcast_shape)

    def call(self, inputs, training=None, mask=None):
        # float16/bfloat16 statistics overflow easily: compute in float32 (or
        # wider), and give back the compute dtype.
        dtype = functional.statistics_dtype(inputs.dtype)
        x = ops.cast(inputs, dtype)
        # Made directly in the statistics' dtype: a Python float meeting a
        # float64 tensor is rounded to float32 first on torch, and
        # ops.cast(float) rounds it on TensorFlow.
        epsilon = ops.convert_to_tensor(self.epsilon, dtype=dtype)
        # Without scale or center, constant per-feature tensors stand in: they
        # cost one per-feature op, and keep a single code path.
        if self.scale:
            gamma = self._param(self.gamma, dtype)
        else:
            gamma = ops.ones(self._broadcast_shape, dtype)
        if self.center:
            beta = self._param(self.beta, dtype)
        else:
            beta = ops.zeros(self._broadcast_shape, dtype)
        training = bool(training) and self.trainable
        mask = self._broadcastable_mask(mask, x)

        if not training:
            if self.mode == 0:
                y = functional.normalize_inference(
                    x,
                    gamma,
                    beta,
                    self._param(self.running_mean, dtype),
                    self._param(self.running_std, dtype),
                    epsilon,
                )
            else:
                # Plain operations, no custom gradient: exporters trace it.
                y = functional.samplewise_inference(
                    x, gamma, beta, epsilon, self.samplewise_epsilon_in_root
                )
            return ops.cast(y, self.compute_dtype)

        batch = x.shape[0]
        if batch == 0:
            # An empty batch has no statistics: the running estimates stay
            # as they are, and the (empty) output keeps its link to gamma
            # and beta, whose gradients are 0.
            return ops.cast(x * gamma + beta, self.compute_dtype)
        if self.virtual_batch_size is not None:
            y, mean, std, count = self._train_ghost_batches(
                x, gamma, beta, epsilon, mask
            )
        else:
            y, mean, std, count = self._train(x, gamma, beta, epsilon, mask)
        # A batch size known only at run time (TensorFlow graphs) may be 0.
        nonempty = ops.shape(x)[0] > 0 if batch is None else None
        self._update_running(mean, std, count, nonempty)
        return ops.cast(y, self.compute_dtype)

    def _train(self, x, gamma, beta, epsilon, mask, reduction_axes=None):
        """Training output, the statistics for the running estimates over
        ``reduction_axes``, and, with a mask or ``skip_non_finite``, how many
        positions each statistic saw (else None)."""
        if reduction_axes is None:
            reduction_axes = self._reduction_axes
        if self.mode == 0 and mask is None and not self.synchronized:
            y, mean, std = functional.featurewise_train(
                x, gamma, beta, reduction_axes, epsilon
            )
            if self.skip_non_finite:
                return (y, *self._finite_statistics(x, epsilon, mask, reduction_axes))
            return y, mean, std, None
        mean, std = functional.batch_moments(
            # Mode 1's output does not depend on these statistics, and
            # without a gradient to track, PyTorch computes them in one kernel.
            x if self.mode == 0 else ops.stop_gradient(x),
            reduction_axes,
            epsilon,
            mask,
            _sum_across_replicas if self.synchronized else None,
        )
        if self.mode == 0:
            # Autodiff differentiates through mean and std here.
            y = functional.normalize_inference(x, gamma, beta, mean, std, epsilon)
        else:
            y = functional.samplewise_normalize(
                x, gamma, beta, epsilon, self.samplewise_epsilon_in_root
            )
        if self.skip_non_finite:
            return (y, *self._finite_statistics(x, epsilon, mask, reduction_axes))
        count = None
        if mask is not None:
            count = ops.sum(
                ops.broadcast_to(ops.cast(mask, x.dtype), ops.shape(x)),
                axis=reduction_axes,
                keepdims=True,
            )
            if self.synchronized:
                count = _sum_across_replicas(count)
        return y, mean, std, count

    def _finite_statistics(self, x, epsilon, mask, reduction_axes):
        """``skip_non_finite``: the batch statistics over the finite (and
        unmasked) positions only, and how many each saw: an extra pass over
        the batch, with a full-size mask."""
        x = ops.stop_gradient(x)
        keep = ops.isfinite(x)
        if mask is not None:
            keep = ops.logical_and(keep, ops.cast(mask, "bool"))
        across = _sum_across_replicas if self.synchronized else None
        mean, std = functional.batch_moments(
            ops.where(keep, x, ops.zeros_like(x)), reduction_axes, epsilon, keep, across
        )
        count = ops.sum(ops.cast(keep, x.dtype), axis=reduction_axes, keepdims=True)
        if across is not None:
            count = across(count)
        return mean, std, count

    def _train_ghost_batches(self, x, gamma, beta, epsilon, mask):
        """Ghost batch normalization: statistics over each run of
        ``virtual_batch_size`` samples; the running estimates follow the mean
        of the ghost batches' statistics (weighted by their unmasked counts
        when there is a mask)."""
        size = self.virtual_batch_size
        batch = x.shape[0]
        if batch is not None and batch % size:
            raise ValueError(
                f"virtual_batch_size: the batch size must be a multiple of "
                f"{size}, got a batch of {batch}."
            )

        def split(t):
            return ops.reshape(t, (-1, size, *t.shape[1:]))

        if mask is not None:
            mask = split(ops.broadcast_to(mask, ops.shape(x)))
        axes = tuple(a + 1 for a in self._reduction_axes)
        y, mean, std, count = self._train(
            split(x),
            # The parameters broadcast over the ghost-batch axis.
            ops.expand_dims(gamma, 0),
            ops.expand_dims(beta, 0),
            epsilon,
            mask,
            axes,
        )
        y = ops.reshape(y, ops.shape(x))
        if count is None:
            # A sum over a count, not ops.mean, which computes float64 in
            # float32 on the torch backend.
            ghosts = ops.cast(ops.shape(x)[0] // size, x.dtype)
            return (
                y,
                ops.sum(mean, axis=0) / ghosts,
                ops.sum(std, axis=0) / ghosts,
                None,
            )
        total = ops.sum(count, axis=0)
        weights = count / ops.maximum(total, 1.0)
        return (
            y,
            ops.sum(weights * mean, axis=0),
            ops.sum(weights * std, axis=0),
            total,
        )

    def _broadcastable_mask(self, mask, x):
        """The mask with the input's rank, checked against the input's shape
        (the input's shape without its last axis, as Keras masks come, or the
        full shape)."""
        if mask is None:
            return None
        mask_shape, x_shape = tuple(mask.shape), tuple(x.shape)
        if len(mask_shape) == len(x_shape) - 1:
            mask = ops.expand_dims(mask, -1)
            mask_shape = (*mask_shape, 1)
        fits = len(mask_shape) == len(x_shape) and all(
            m is None or n is None or m == n or (i == len(x_shape) - 1 and m == 1)
            for i, (m, n) in enumerate(zip(mask_shape, x_shape))
        )
        if not fits:
            raise ValueError(
                "mask: expected the input's shape without its last axis "
                f"{x_shape[:-1]} or the input's shape {x_shape}, got "
                f"{tuple(mask.shape)}."
            )
        return mask

    def _update_running(self, mean, std, count=None, nonempty=None):
        """The seed's update. A feature that the batch gave no position for
        (``count`` 0: masked, or non-finite with ``skip_non_finite``) keeps
        its running estimates, as do all features when ``nonempty`` (a
        scalar boolean tensor) is false; with ``skip_non_finite``, so does a
        feature whose statistics still came out non-finite (sums beyond the
        dtype's range)."""
        shape = self.running_mean.shape
        dtype = self.running_mean.dtype
        momentum = ops.convert_to_tensor(self.momentum, dtype=dtype)
        batch_values = [
            ops.cast(ops.reshape(ops.stop_gradient(value), shape), dtype)
            for value in (mean, std)
        ]
        keep = None if count is None else ops.reshape(count, shape) > 0
        if self.skip_non_finite:
            finite = ops.logical_and(*(ops.isfinite(v) for v in batch_values))
            keep = finite if keep is None else ops.logical_and(keep, finite)
        if nonempty is not None:
            keep = nonempty if keep is None else ops.logical_and(keep, nonempty)
        for variable, batch_value in zip(
            (self.running_mean, self.running_std), batch_values
        ):
            updated = functional.moving_average(variable, batch_value, momentum)
            if keep is not None:
                updated = ops.where(keep, updated, variable.value)
            variable.assign(updated)

    # -- serialization -----------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_shape": self.input_shape,
                "epsilon": self.epsilon,
                "mode": self.mode,
                "momentum": self.momentum,
                "axis": self.axis,
                "center": self.center,
                "scale": self.scale,
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "running_mean_initializer": initializers.serialize(
                    self.running_mean_initializer
                ),
                "running_std_initializer": initializers.serialize(
                    self.running_std_initializer
                ),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_constraint": constraints.serialize(self.gamma_constraint),
                "beta_constraint": constraints.serialize(self.beta_constraint),
                "synchronized": self.synchronized,
                "virtual_batch_size": self.virtual_batch_size,
                "samplewise_epsilon_in_root": self.samplewise_epsilon_in_root,
                "skip_non_finite": self.skip_non_finite,
            }
        )
        return config
