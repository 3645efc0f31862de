"""`keras_bn.BatchNormalization`: the 2015 Keras layer on Keras 3."""

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras import constraints, initializers, ops, regularizers

from keras_bn import _training, _validation, functional

__all__ = ["BatchNormalization"]


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
            in both phases; the running estimates still update); 2 for
            Keras 1.x's mode 2: featurewise, with the batch's statistics in
            both phases, ``gamma * (x - m) / sqrt(var + epsilon) + beta``
            (epsilon once, inside the root, as Keras 1.x computed it), the
            running estimates never updated.
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
        synchronized: False (default): under ``tf.distribute`` each replica
            normalizes with its own batch's statistics. True: the statistics
            of the global batch, all-reduced across replicas. On JAX the
            batch is one global array, so its statistics are global either
            way; on PyTorch, where Keras does not distribute, True is a
            ValueError.
        virtual_batch_size: None (default), or a positive int that divides
            the batch size: ghost batch normalization, each run of that many
            samples normalized with its own statistics; the running
            estimates follow their average. Not with ``synchronized=True``.
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
        renorm: False (default) or True: Batch Renormalization (Ioffe,
            2017), mode 0 only. In training the batch's statistics are
            corrected towards the running estimates,
            ``gamma * ((x - m) / (std + epsilon) * r + d) + beta`` with
            ``r = (std + epsilon) / (running_std + epsilon)`` and
            ``d = (m - running_mean) / (running_std + epsilon)``, clipped by
            ``renorm_clipping`` and held constant for the gradient; unclipped,
            that is the inference output. See docs/semantics.md.
        renorm_clipping: None (no clipping) or a dict with any of ``rmax``,
            ``rmin`` and ``dmax``: ``r`` is clipped to ``[rmin, rmax]``,
            ``d`` to ``[-dmax, dmax]``. With ``renorm=True`` only.
        renorm_momentum: None (default): ``r`` and ``d`` use the running
            estimates themselves, updated with ``momentum``, and the weight
            list stays the seed's. A number in [0, 1] (Keras' two-rate
            design): ``r`` and ``d`` use estimates of their own,
            ``renorm_mean`` and ``renorm_std``, updated with this momentum,
            while ``running_mean`` and ``running_std`` (inference) follow
            ``momentum``; the weight list gains ``renorm_mean`` and
            ``renorm_std`` at its end. With ``renorm=True`` only.
        **kwargs: Base layer keyword arguments (``name``, ``dtype``,
            ``trainable``, ...).

    Call arguments:
        inputs: A tensor whose non-batch shape fits the layer: floats, or
            integers, which are cast to the layer's compute dtype first.
        training: Whether to normalize with the batch statistics and update
            the running estimates. A layer with ``trainable=False`` always
            runs in inference mode and leaves its running estimates alone.
        mask: Optional boolean tensor of the input's rank without its last
            axis (as Keras hands masks on), or of the input's rank, that
            broadcasts to the input (each size the input's or 1); masked
            positions enter neither the batch statistics nor the running
            estimates.

    Weights:
        ``get_weights()`` returns ``[gamma, beta, running_mean,
        running_std]``, without ``gamma`` when ``scale=False`` and without
        ``beta`` when ``center=False``; with ``renorm_momentum``,
        ``renorm_mean`` and ``renorm_std`` follow.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_bn import BatchNormalization

    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(100, use_bias=False),
            BatchNormalization(input_shape=(100,)),  # the seed's signature
            keras.layers.Activation("sigmoid"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.rand(600, 64).astype("float32")
    y = np.random.randint(0, 10, size=600)
    model.fit(x, y, batch_size=60, epochs=1, verbose=0)  # updates running_*
    gamma, beta, running_mean, running_std = model.layers[1].get_weights()
    model.predict(x[:5], verbose=0)  # normalizes with running_mean, running_std
    ```

    Reference:
        - [Ioffe and Szegedy, 2015](https://arxiv.org/abs/1502.03167).
        - [Ioffe, 2017](https://arxiv.org/abs/1702.03275) (``renorm``).
    """

    built: bool  # set by keras.layers.Layer

    def __init__(
        self,
        input_shape: Sequence[int] | None = None,
        epsilon: float = 1e-6,
        mode: int = 0,
        momentum: float = 0.9,
        weights: Sequence[Any] | None = None,
        *,
        axis: int | Sequence[int] | None = None,
        center: bool = True,
        scale: bool = True,
        gamma_initializer: str | keras.initializers.Initializer = "ones",
        beta_initializer: str | keras.initializers.Initializer = "zeros",
        running_mean_initializer: str | keras.initializers.Initializer = "zeros",
        running_std_initializer: str | keras.initializers.Initializer = "ones",
        gamma_regularizer: str | keras.regularizers.Regularizer | None = None,
        beta_regularizer: str | keras.regularizers.Regularizer | None = None,
        gamma_constraint: str | keras.constraints.Constraint | None = None,
        beta_constraint: str | keras.constraints.Constraint | None = None,
        synchronized: bool = False,
        virtual_batch_size: int | None = None,
        samplewise_epsilon_in_root: bool = False,
        skip_non_finite: bool = False,
        renorm: bool = False,
        renorm_clipping: dict[str, float] | None = None,
        renorm_momentum: float | None = None,
        **kwargs: Any,
    ) -> None:
        input_shape, self.epsilon, self.mode, self.momentum, self.axis = (
            _validation.seed_arguments(input_shape, epsilon, mode, momentum, axis)
        )
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
        check = _validation
        self.synchronized = check.flag("synchronized", synchronized)
        self.virtual_batch_size = check.integer(
            "virtual_batch_size",
            virtual_batch_size,
            expected="None or a positive int",
            minimum=1,
            allow_none=True,
        )
        self.samplewise_epsilon_in_root = check.flag(
            "samplewise_epsilon_in_root", samplewise_epsilon_in_root
        )
        self.skip_non_finite = check.flag("skip_non_finite", skip_non_finite)
        self.renorm, self.renorm_clipping, self.renorm_momentum = (
            check.renorm_arguments(renorm, renorm_clipping, renorm_momentum, self.mode)
        )
        _validation.option_combinations(
            self.mode,
            self.synchronized,
            self.virtual_batch_size,
            self.samplewise_epsilon_in_root,
            self.skip_non_finite,
        )
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
        self._input_recorder: Callable[[Any, Any], None] | None = None
        self._initial_weights = weights
        if input_shape is not None:
            self.build((None, *input_shape))

    # -- building ----------------------------------------------------------

    def feature_axes(self, ndim: int) -> tuple[int, ...]:
        """The feature axes for inputs of rank ``ndim``: sorted, positive.

        The axes the layer keeps one statistic (and one ``gamma``, ``beta``)
        per position of; it reduces over all the others. Raises
        ``ValueError`` where ``axis`` does not fit that rank."""
        return _validation.feature_axes(self.axis, ndim)

    def build(self, input_shape: Sequence[int | None]) -> None:
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
        feature_axes = self.feature_axes(ndim)
        param_shape = tuple(input_shape[a] for a in feature_axes)
        if any(d is None for d in param_shape):
            raise ValueError(
                f"inputs: the feature axes {feature_axes} need known sizes, "
                f"got shape {input_shape}."
            )
        self._check_epsilon_fits_dtype()
        if self._initial_weights is not None:
            self._check_weight_shapes(self._initial_weights, param_shape)

        for name in self._weight_names():
            if name in ("gamma", "beta"):
                options = dict(
                    regularizer=getattr(self, f"{name}_regularizer"),
                    constraint=getattr(self, f"{name}_constraint"),
                    trainable=True,
                )
            else:
                # Replicas' running estimates are averaged when they differ.
                options = dict(aggregation="mean", trainable=False)
            # renorm's own estimates start as the running estimates do.
            initializer = name.replace("renorm_", "running_") + "_initializer"
            weight = self.add_weight(
                shape=param_shape,
                name=name,
                initializer=getattr(self, initializer),
                autocast=False,
                **options,
            )
            setattr(self, name, weight)
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

    @property
    def reduction_axes(self) -> tuple[int, ...]:
        """The axes a built layer takes its statistics over: the batch axis
        and every axis that is not a feature axis (sorted, positive)."""
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' is not built yet: its reduction axes "
                "depend on the rank of its inputs."
            )
        return self._reduction_axes

    @contextlib.contextmanager
    def record_inputs(
        self, record: Callable[[Any, Any], None]
    ) -> Iterator["BatchNormalization"]:
        """Within the ``with`` block, every call of the layer first passes
        ``record(x, mask)`` what it is about to normalize, in either phase:
        ``x``, the inputs cast to the dtype the statistics are computed in,
        and ``mask``, None or a boolean tensor of ``x``'s rank that
        broadcasts to it (true = the position enters the statistics).
        Statistics over ``reduction_axes`` of the recorded ``x`` are the
        layer's batch statistics; `keras_bn.recompute_statistics` pools them
        over a data set this way. Runs eagerly only: in a compiled function,
        ``record`` would see symbolic tensors.
        """
        previous, self._input_recorder = self._input_recorder, record
        try:
            yield self
        finally:
            self._input_recorder = previous

    # -- weights -------------------------------------------------------------

    def _weight_names(self):
        return (
            (["gamma"] if self.scale else [])
            + (["beta"] if self.center else [])
            + ["running_mean", "running_std"]
            + (
                ["renorm_mean", "renorm_std"]
                if self.renorm_momentum is not None
                else []
            )
        )

    def _ordered_weights(self):
        return [getattr(self, name) for name in self._weight_names()]

    def _check_epsilon_fits_dtype(self):
        _validation.epsilon_fits(
            self.epsilon,
            functional.statistics_dtype(self.compute_dtype),
            self.dtype_policy.name,
        )

    def _check_weight_values(self, weights, dtypes):
        return _validation.weight_list(self._weight_names(), weights, dtypes)

    def _check_weight_shapes(self, arrays, param_shape):
        _validation.weight_shapes(self._weight_names(), arrays, param_shape)

    def _assign_weights(self, arrays):
        for variable, array in zip(self._ordered_weights(), arrays):
            variable.assign(array.astype(_validation.numpy_dtype(variable.dtype)))

    def get_weights(self) -> list[np.ndarray]:
        """Returns ``[gamma, beta, running_mean, running_std]`` as NumPy arrays
        (without gamma or beta when ``scale`` or ``center`` is off)."""
        if not self.built:
            return []
        return [np.array(v.numpy()) for v in self._ordered_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
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
        dtype = functional.statistics_dtype(inputs.dtype, self.compute_dtype)
        x = functional.as_dtype(inputs, dtype)
        # In the statistics' dtype: a Python float meeting a float64 tensor
        # is rounded to float32 first on torch.
        epsilon = functional.constant_like(self.epsilon, x)
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
        mask = _training.broadcastable_mask(mask, x)
        if self._input_recorder is not None:
            self._input_recorder(x, mask)

        if self.mode == 2:
            # Keras 1.x: the batch's statistics in both phases, its running
            # estimates never updated (as the releases' own files show).
            y = functional.keras1_batch_normalize(
                x, gamma, beta, self._reduction_axes, epsilon, mask
            )
            return functional.as_dtype(y, self.compute_dtype)

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
            return functional.as_dtype(y, self.compute_dtype)

        batch = x.shape[0]
        if batch == 0:
            # An empty batch has no statistics: the running estimates stay
            # as they are, and the (empty) output keeps its link to gamma
            # and beta, whose gradients are 0.
            return functional.as_dtype(x * gamma + beta, self.compute_dtype)
        reference = None
        if self.renorm:
            # r and d correct towards the estimates before this update.
            prefix = "running" if self.renorm_momentum is None else "renorm"
            reference = tuple(
                self._param(getattr(self, f"{prefix}_{name}"), dtype)
                for name in ("mean", "std")
            )
        y, mean, std, count = _training.train(
            self, x, gamma, beta, epsilon, mask, reference
        )
        # A batch size known only at run time (TensorFlow graphs) may be 0.
        nonempty = ops.shape(x)[0] > 0 if batch is None else None
        _training.update_running(self, mean, std, count, nonempty)
        return functional.as_dtype(y, self.compute_dtype)

    def rematerialized_call(self, layer_call, *args, **kwargs):
        """Keras' rematerialization (``keras.RematScope``) of ``call``, with
        ``training`` bound first: JAX's ``checkpoint`` traces every argument
        it is given, and the layer branches on that flag."""

        def call(*call_args, training=None, **call_kwargs):
            bound = functools.partial(layer_call, training=training)
            remat = super(BatchNormalization, self).rematerialized_call
            return remat(bound, *call_args, **call_kwargs)(*call_args, **call_kwargs)

        return call

    # -- serialization -----------------------------------------------------

    def get_config(self) -> dict[str, Any]:
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
                "renorm": self.renorm,
                "renorm_clipping": (
                    None if self.renorm_clipping is None else dict(self.renorm_clipping)
                ),
                "renorm_momentum": self.renorm_momentum,
            }
        )
        return config
