"""keras_bn.functional's fast paths against the NumPy restatement of the seed.

The training functions carry closed-form gradients (keras.ops.custom_gradient,
and PyTorch's fused batch-norm kernels on that backend); these tests check
them against finite differences of tests/reference.py in float64, over shapes
and feature axes that take each code path: trailing features, features in the
middle, features that are not adjacent, per-activation statistics, and the
regrouped sums TensorFlow gets for narrow features. Each backend
replacement (keras_bn/_backend) runs beside the generic keras.ops form it
replaces, on the same inputs, against the same reference.
"""

import keras
import numpy as np
import pytest
from conftest import BACKEND, dtype_scope, numeric_gradient, to_numpy
from reference import (
    keras1_samplewise,
    seed_batch_statistics,
    seed_featurewise,
    seed_samplewise,
)

from keras_bn import _backend, functional

EPSILON = 1e-3

# (input shape, feature axes): the statistics reduce over all other axes.
FEATURE_LAYOUTS = [
    ((6, 3), (1,)),  # Dense output, axis=-1
    ((4, 2, 3), (1, 2)),  # axis=None: per-activation statistics
    ((4, 2, 3), (2,)),  # sequence, axis=-1
    ((3, 2, 2, 3), (3,)),  # channels-last image
    ((3, 3, 2, 2), (1,)),  # channels-first image: features in the middle
    ((3, 2, 2, 3), (1, 3)),  # features that are not adjacent
    ((2, 3, 4), (0, 2)),  # ghost batches: the ghost axis is a feature axis
    ((16, 64), (1,)),  # narrow features, rows regrouped on TensorFlow
]


def reduction_axes(shape, feature_axes):
    return tuple(a for a in range(len(shape)) if a not in feature_axes)


def parameter_shape(shape, feature_axes):
    return tuple(d if a in feature_axes else 1 for a, d in enumerate(shape))


def gradients(function, upstream, *inputs):
    """Gradients of ``sum(function(*inputs) * upstream)`` with respect to
    each input, on the current backend."""
    if BACKEND == "jax":
        import jax

        def loss(*args):
            return jax.numpy.sum(function(*args) * upstream)

        grads = jax.grad(loss, argnums=tuple(range(len(inputs))))(*inputs)
        return [np.asarray(g) for g in grads]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        inputs = [tf.constant(v) for v in inputs]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(function(*inputs) * upstream)
        return [g.numpy() for g in tape.gradient(loss, inputs)]
    import torch

    inputs = [torch.tensor(v, requires_grad=True) for v in inputs]
    torch.sum(function(*inputs) * torch.as_tensor(upstream)).backward()
    return [v.grad.numpy() for v in inputs]


def random_inputs(rng, shape, param_shape):
    return (
        rng.normal(1.0, 2.0, size=shape),
        rng.uniform(0.5, 1.5, param_shape),
        rng.normal(size=param_shape),
        rng.normal(size=shape),
    )


def assert_gradients_match(function, reference, x, gamma, beta, upstream):
    """The backend's gradients of ``function`` against central differences
    of the NumPy ``reference``, for x, gamma and beta."""
    with dtype_scope("float64"):
        dx, dgamma, dbeta = gradients(function, upstream, x, gamma, beta)

    def loss(x, gamma, beta):
        return np.sum(reference(x, gamma, beta) * upstream)

    for got, wrt, expected_of in [
        (dx, x, lambda v: loss(v, gamma, beta)),
        (dgamma, gamma, lambda v: loss(x, v, beta)),
        (dbeta, beta, lambda v: loss(x, gamma, v)),
    ]:
        assert got.shape == wrt.shape
        np.testing.assert_allclose(
            got, numeric_gradient(expected_of, wrt), rtol=1e-6, atol=1e-7
        )


def featurewise_pair(axes):
    """``featurewise_train``'s output over ``axes``, and the NumPy reference's."""

    def function(x, gamma, beta):
        epsilon = keras.ops.convert_to_tensor(EPSILON, "float64")
        return functional.featurewise_train(x, gamma, beta, axes, epsilon)[0]

    def reference(x, gamma, beta):
        mean, std = seed_batch_statistics(x, EPSILON, axes)
        return seed_featurewise(x, gamma, beta, mean, std, EPSILON)

    return function, reference


@pytest.mark.parametrize("shape, feature_axes", FEATURE_LAYOUTS)
def test_featurewise_train_gradients_match_finite_differences(rng, shape, feature_axes):
    axes = reduction_axes(shape, feature_axes)
    x, gamma, beta, upstream = random_inputs(
        rng, shape, parameter_shape(shape, feature_axes)
    )

    assert_gradients_match(*featurewise_pair(axes), x, gamma, beta, upstream)


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 2, 3)])
def test_featurewise_train_takes_parameters_of_the_feature_shape(rng, shape):
    """gamma and beta of shape (features,), broadcasting from the right, get
    gradients of that shape."""
    axes = tuple(range(len(shape) - 1))
    x, gamma, beta, upstream = random_inputs(rng, shape, shape[-1:])

    assert_gradients_match(*featurewise_pair(axes), x, gamma, beta, upstream)


@pytest.mark.parametrize("upstream_kind", ["independent", "correlated"])
def test_featurewise_train_gradients_of_a_batch_far_from_zero(rng, upstream_kind):
    """float32, 2^16 rows, features of mean 1000 (std 1) and -3 (std 0.01):
    the gradients must center x before multiplying (``sum(dy * x) - mean *
    sum(dy)`` loses the spread's digits to the mean's, a gamma gradient off
    by about 2e-4 of its size here, dx by 1e-6; centered, 2e-6 and 1e-7).
    With an upstream gradient correlated with the normalized input (as a
    loss's often is), dx's ``(x - mean) * slope`` term is as large as its
    ``dy * scale`` term."""
    rows, epsilon = 2**16, 1e-3
    x = rng.normal(0.0, 1.0, size=(rows, 4))
    x[:, 1] = rng.normal(1000.0, 1.0, size=rows)
    x[:, 2] = rng.normal(-3.0, 0.01, size=rows)
    x = x.astype("float32")
    upstream = rng.normal(size=(rows, 4))
    if upstream_kind == "correlated":
        upstream += (x - x.mean(axis=0)) / x.std(axis=0)
    upstream = upstream.astype("float32")
    gamma = rng.uniform(0.5, 1.5, 4).astype("float32")
    beta = rng.normal(size=4).astype("float32")

    def function(x, gamma, beta):
        return functional.featurewise_train(x, gamma, beta, (0,), epsilon)[0]

    dx, dgamma, dbeta = gradients(function, upstream, x, gamma, beta)

    exact_x, exact_dy = x.astype("float64"), upstream.astype("float64")
    mean, std = seed_batch_statistics(exact_x, epsilon, (0,))

    def loss(gamma):
        y = seed_featurewise(exact_x, gamma, beta, mean, std, epsilon)
        return np.sum(y * exact_dy)

    # The loss is linear in gamma: central differences are exact up to
    # float64 rounding.
    expected_dgamma = numeric_gradient(loss, gamma.astype("float64"), step=1e-3)
    # dx by the seed's formula differentiated by hand (the small-shape tests
    # above hold the closed form to finite differences):
    # d = std + eps, dx = gamma / d * (dy - mean(dy)
    #                      - (x - mean) * sum(dy * (x - mean)) / (n * std * d))
    d = std + epsilon
    centered = exact_x - mean
    expected_dx = (
        gamma
        / d
        * (
            exact_dy
            - exact_dy.mean(axis=0)
            - centered * np.sum(exact_dy * centered, axis=0) / (rows * std * d)
        )
    )

    def relative_error(got, expected):
        return np.max(np.abs(got - expected)) / np.max(np.abs(expected))

    # PyTorch's float32 sums over the batch axis (its fused backward
    # kernel's, keras_bn/_backend/torch.py, as torch.nn.BatchNorm's own)
    # add the rows one after another: measured 6e-5 for gamma and 3e-6 for
    # beta here, against 2e-6 and 3e-7 for XLA's cascaded sums.
    # XLA as jaxlib 0.6 ships it (the declared floor) sums less accurately:
    # its gamma gradient is off by 6.4e-5 here.
    sums_tolerance = 2e-4 if BACKEND == "torch" or _old_jaxlib() else 2e-5
    assert relative_error(dgamma, expected_dgamma) < sums_tolerance
    assert relative_error(dbeta, exact_dy.sum(axis=0)) < sums_tolerance
    # dx = dy * scale + x * slope - (... + mean * slope): with a correlated
    # upstream the slope terms are large, and x * slope - mean * slope loses
    # about three digits to the mean (measured 1.2e-6 to 1.4e-6 on JAX and
    # TensorFlow, 8e-7 in PyTorch's kernel, which centers there; 1e-7 with
    # an independent upstream).
    dx_tolerance = 3e-6 if upstream_kind == "correlated" else 5e-7
    assert relative_error(dx, expected_dx) < dx_tolerance


def _old_jaxlib():
    if BACKEND != "jax":
        return False
    import jaxlib

    return tuple(int(p) for p in jaxlib.__version__.split(".")[:2]) < (0, 7)


SAMPLEWISE = {
    # function name: the phase it serves, and how it differentiates
    "samplewise_normalize": "training, closed-form gradient",
    "samplewise_inference": "inference, autodiff",
}


@pytest.mark.parametrize("name", sorted(SAMPLEWISE))
@pytest.mark.parametrize("epsilon_in_root", [False, True])
@pytest.mark.parametrize(
    "shape, param_shape",
    [((6, 5), (1, 5)), ((3, 4, 5), (1, 1, 5)), ((3, 4, 5), (1, 4, 5))],
)
def test_samplewise_gradients_match_finite_differences(
    rng, shape, param_shape, epsilon_in_root, name
):
    x, gamma, beta, upstream = random_inputs(rng, shape, param_shape)

    def function(x, gamma, beta):
        epsilon = keras.ops.convert_to_tensor(EPSILON, "float64")
        return getattr(functional, name)(x, gamma, beta, epsilon, epsilon_in_root)

    def reference(x, gamma, beta):
        if epsilon_in_root:
            return keras1_samplewise(x, gamma, beta, EPSILON)
        return seed_samplewise(x, gamma, beta, EPSILON)

    assert_gradients_match(function, reference, x, gamma, beta, upstream)


@pytest.mark.parametrize("name", sorted(SAMPLEWISE))
@pytest.mark.parametrize("epsilon_in_root", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_samplewise_values(rng, dtype, epsilon_in_root, name):
    # A large epsilon makes the two forms differ well beyond rounding.
    epsilon = 0.25
    x, gamma, beta, _ = random_inputs(rng, (5, 3, 4), (1, 3, 4))
    reference = keras1_samplewise if epsilon_in_root else seed_samplewise
    expected = reference(x.astype(dtype), gamma, beta, epsilon)
    other = (seed_samplewise if epsilon_in_root else keras1_samplewise)(
        x.astype(dtype), gamma, beta, epsilon
    )
    assert np.max(np.abs(expected - other)) > 1e-2
    with dtype_scope(dtype):
        y = getattr(functional, name)(
            *(keras.ops.convert_to_tensor(v.astype(dtype)) for v in (x, gamma, beta)),
            keras.ops.convert_to_tensor(epsilon, dtype),
            epsilon_in_root,
        )
        y = to_numpy(y)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", sorted(SAMPLEWISE))
def test_samplewise_gradient_of_a_constant_sample_is_finite(rng, name):
    # The std of a constant sample is 0, where autodiff of sqrt gives NaN.
    x = rng.normal(size=(3, 4))
    x[1] = 2.5
    upstream = rng.normal(size=x.shape)
    with dtype_scope("float64"):
        (dx,) = gradients(
            lambda x: getattr(functional, name)(
                x, 1.0, 0.0, keras.ops.convert_to_tensor(EPSILON, "float64")
            ),
            upstream,
            x,
        )
    assert np.all(np.isfinite(dx))
    # The constant sample's gradient: its std has derivative 0 there, so
    # dx = (u - mean(u)) / epsilon.
    np.testing.assert_allclose(
        dx[1], (upstream[1] - upstream[1].mean()) / EPSILON, rtol=1e-9
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, feature_axes", FEATURE_LAYOUTS)
def test_featurewise_train_outputs_and_statistics(rng, shape, feature_axes, dtype):
    axes = reduction_axes(shape, feature_axes)
    x, gamma, beta, _ = random_inputs(rng, shape, parameter_shape(shape, feature_axes))
    x = x + 10.0  # a mean well away from 0 tests the two-pass variance
    tolerance = (
        dict(rtol=1e-5, atol=1e-5)
        if dtype == "float32"
        else dict(rtol=1e-12, atol=1e-12)
    )
    with dtype_scope(dtype):
        epsilon = keras.ops.convert_to_tensor(EPSILON, dtype)
        y, mean, std = functional.featurewise_train(
            *(keras.ops.convert_to_tensor(v.astype(dtype)) for v in (x, gamma, beta)),
            axes,
            epsilon,
        )
        y, mean, std = to_numpy(y), to_numpy(mean), to_numpy(std)
    expected_mean, expected_std = seed_batch_statistics(x.astype(dtype), EPSILON, axes)
    np.testing.assert_allclose(mean, expected_mean, **tolerance)
    np.testing.assert_allclose(std, expected_std, **tolerance)
    np.testing.assert_allclose(
        y,
        seed_featurewise(
            x.astype(dtype), gamma, beta, expected_mean, expected_std, EPSILON
        ),
        **tolerance,
    )


@pytest.mark.parametrize("shape, feature_axes", FEATURE_LAYOUTS[:5])
def test_normalize_inference_is_the_seed_formula(rng, shape, feature_axes):
    param_shape = parameter_shape(shape, feature_axes)
    x = rng.normal(size=shape).astype("float32")
    gamma, beta, running_mean = (rng.normal(size=param_shape) for _ in range(3))
    running_std = rng.uniform(0.5, 2.0, param_shape)
    params = [
        keras.ops.convert_to_tensor(v.astype("float32"))
        for v in (gamma, beta, running_mean, running_std)
    ]
    y = functional.normalize_inference(
        keras.ops.convert_to_tensor(x),
        *params,
        keras.ops.convert_to_tensor(EPSILON, "float32"),
    )
    np.testing.assert_allclose(
        to_numpy(y),
        seed_featurewise(x, gamma, beta, running_mean, running_std, EPSILON),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's autograd graph only")
def test_batch_moments_keeps_autodiff_on_torch(rng):
    # PyTorch's statistics kernel has no derivative: batch_moments must not
    # use it where a gradient flows through the statistics.
    import torch

    x = torch.tensor(rng.normal(size=(5, 3)), requires_grad=True)
    mean, std = functional.batch_moments(
        x, (0,), keras.ops.convert_to_tensor(EPSILON, "float64")
    )
    torch.sum(mean + std).backward()
    x_np = x.detach().numpy()

    def loss(v):
        m, s = seed_batch_statistics(v, EPSILON)
        return np.sum(m + s)

    np.testing.assert_allclose(x.grad.numpy(), numeric_gradient(loss, x_np), atol=1e-7)


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's statistics kernel")
@pytest.mark.parametrize(
    "shape, axes",
    [
        ((1024, 5), (0,)),  # 1024 rows: the kernel as it is
        ((4096, 3), (0,)),  # four interleaved groups of 1024 rows
        ((5003, 3), (0,)),  # five groups of 1000 rows, and 3 rows over
        ((2050, 1), (0,)),  # one feature; 1 row over
        ((64, 6, 7, 3), (0, 1, 2)),  # channels last (NHWC)
        ((16, 3, 40, 40), (0, 2, 3)),  # channels first: summed in float64
        ((3, 4, 5), (0, 2)),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("contiguous", [True, False])
def test_torch_statistics_kernel_far_from_zero(
    rng, monkeypatch, shape, axes, dtype, contiguous
):
    """Where no gradient flows through them, the statistics come from
    PyTorch's batch-norm kernel, whose float32 running sums lose the spread
    to a large mean past a few thousand rows: no sum it is given runs over
    more than 1024 rows (a features-last batch is cut into interleaved
    groups), and the combined statistics of data of mean 1000 and std 1
    match float64 NumPy."""
    import torch

    from keras_bn._backend import torch as torch_backend

    kernel_inputs = []
    kernel = torch_backend._kernel_statistics

    def recording_kernel(t):
        kernel_inputs.append(tuple(t.shape))
        return kernel(t)

    monkeypatch.setattr(torch_backend, "_kernel_statistics", recording_kernel)
    x = rng.normal(1000.0, 1.0, size=shape).astype(dtype)
    if contiguous:
        x_torch = torch.from_numpy(x)
    else:  # the same values, laid out transposed in memory
        reverse = tuple(reversed(range(x.ndim)))
        x_torch = torch.from_numpy(np.ascontiguousarray(x.transpose(reverse)))
        x_torch = x_torch.permute(reverse)
    count = int(np.prod([shape[a] for a in axes]))
    mean, variance = torch_backend.moments(x_torch, axes, count)

    assert kernel_inputs
    for kernel_shape in kernel_inputs:
        columns = kernel_shape[2] if len(kernel_shape) == 3 else 1
        # Per-feature sums over rows one after another in float32: few rows.
        assert columns > 1 or kernel_shape[0] <= 1024
    exact = x.astype("float64")
    want_mean = exact.mean(axis=axes, keepdims=True)
    want_variance = exact.var(axis=axes, keepdims=True)
    assert tuple(mean.shape) == want_mean.shape == tuple(variance.shape)
    spread = np.sqrt(want_variance)
    # float32: what two passes of torch.sum give, within the bounds of
    # test_statistics_of_a_large_batch_with_a_large_mean (a float32 ulp at
    # 1000 is 6e-5 of the spread).
    bound = 1e-3 if dtype == "float32" else 1e-10
    np.testing.assert_array_less(np.abs(mean.numpy() - want_mean), bound * spread)
    np.testing.assert_allclose(variance.numpy(), want_variance, rtol=bound)


# -- backend replacements against the generic forms ------------------------------


@pytest.fixture(params=["backend", "generic"])
def math_path(request, monkeypatch):
    """Runs a test twice: with the backend's replacements (keras_bn/_backend),
    and with functional.py's generic keras.ops forms alone."""
    if request.param == "generic":
        backend_replacement = functional.replacement

        def generic(operation):
            # On JAX the closed forms' custom JVP is no faster arithmetic but
            # the only form that runs: the generic one closes custom_gradient
            # over the statistics, which JAX's custom_gradient cannot do.
            if BACKEND == "jax" and operation == "differentiable":
                return backend_replacement(operation)
            return None

        monkeypatch.setattr(functional, "replacement", generic)
    return request.param


def test_replacement_table_names_each_backend_module_function():
    for operation, backends in _backend.REPLACED.items():
        for backend in backends:
            assert backend in ("tensorflow", "torch", "jax")
            if backend == BACKEND:
                assert callable(_backend.replacement(operation))
    if BACKEND == "jax":
        # The closed forms' custom JVP only: XLA needs no faster arithmetic.
        assert [op for op in _backend.REPLACED if _backend.replacement(op)] == [
            "differentiable"
        ]


LAYOUTS_FOR_REPLACEMENTS = [
    ((3, 3, 2, 2), (1,)),  # one run of feature axes: PyTorch's fused kernel
    ((3, 2, 2, 3), (1, 3)),  # not adjacent: the generic form on every backend
    ((16, 64), (1,)),  # narrow features: TensorFlow's regrouped sums
]


@pytest.mark.parametrize(
    "operation",
    [
        "multiply_add",
        "sum",
        "moments",
        "featurewise_backward",
        "reshape",
        "constant_like",
        "detached_like",
    ],
)
def test_backend_replacements_match_the_generic_forms(rng, math_path, operation):
    """Every operation of keras_bn/_backend's table, once through the running
    backend's replacement and once through the generic form (math_path),
    against NumPy on the same inputs, in float64."""
    with dtype_scope("float64"):
        if operation == "multiply_add":
            x = rng.normal(size=(5, 3, 4))
            scale, offset = rng.normal(size=(1, 3, 1)), rng.normal(size=(1, 3, 1))
            got = functional._multiply_add(
                keras.ops.convert_to_tensor(x), scale, offset
            )
            np.testing.assert_allclose(to_numpy(got), x * scale + offset, rtol=1e-12)
        elif operation == "sum":
            # 1024 rows of 16 features: regrouped on TensorFlow.
            t = rng.normal(size=(64, 4, 4, 16))
            got = functional._sum(keras.ops.convert_to_tensor(t), (0, 1, 2))
            np.testing.assert_allclose(
                to_numpy(got), t.sum(axis=(0, 1, 2), keepdims=True), rtol=1e-12
            )
        elif operation == "moments":
            # A large mean against a small spread: two passes keep the std.
            x = rng.normal(1000.0, 1.0, size=(512, 2, 3))
            mean, std = functional.batch_moments(
                keras.ops.convert_to_tensor(x),
                (0, 1),
                keras.ops.convert_to_tensor(EPSILON, "float64"),
            )
            want_mean, want_std = seed_batch_statistics(x, EPSILON, (0, 1))
            np.testing.assert_allclose(to_numpy(mean), want_mean, rtol=1e-12)
            np.testing.assert_allclose(to_numpy(std), want_std, rtol=1e-9)
        elif operation == "reshape":
            t = rng.normal(size=(1, 1, 3))
            got = functional._reshape(keras.ops.convert_to_tensor(t), (3,))
            np.testing.assert_array_equal(to_numpy(got), t.reshape(3))
        elif operation == "constant_like":
            # Not rounded through float32 on the way.
            like = keras.ops.convert_to_tensor(rng.normal(size=(2,)))
            got = functional.constant_like(1e-7 + 1e-15, like)
            assert keras.backend.standardize_dtype(got.dtype) == "float64"
            assert to_numpy(got) == np.float64(1e-7 + 1e-15)
    if operation == "detached_like":
        with dtype_scope("float64"):
            # A float32 statistic with a gradient, in a float64 estimate's form.
            value = rng.normal(size=(1, 1, 3)).astype("float32")
            like = keras.ops.convert_to_tensor(np.zeros(3), "float64")

            def detached_sum(v):
                detached = keras.ops.sum(functional.detached_like(v * 2.0, like))
                return v * 0.0 + keras.ops.cast(detached, "float32")

            (gradient,) = gradients(detached_sum, np.ones_like(value), value)
            np.testing.assert_array_equal(gradient, np.zeros_like(value))
            got = functional.detached_like(keras.ops.convert_to_tensor(value), like)
            assert keras.backend.standardize_dtype(got.dtype) == "float64"
            np.testing.assert_array_equal(to_numpy(got), value.reshape(3))
    if operation == "featurewise_backward":
        for shape, feature_axes in LAYOUTS_FOR_REPLACEMENTS:
            x, gamma, beta, upstream = random_inputs(
                rng, shape, parameter_shape(shape, feature_axes)
            )
            axes = reduction_axes(shape, feature_axes)
            assert_gradients_match(*featurewise_pair(axes), x, gamma, beta, upstream)


def test_inference_context_replacement(rng):
    """PyTorch's replacement keeps no autograd graph (the generic form is no
    context at all), and changes no value."""
    context = _backend.replacement("inference_context")
    if context is None:
        pytest.skip("no replacement on this backend")
    x = keras.ops.convert_to_tensor(rng.normal(size=(4, 3)), "float32")
    with context():
        y = functional.normalize_inference(x, 2.0, 1.0, 0.5, 1.5, EPSILON)
    assert not y.requires_grad
    np.testing.assert_allclose(
        to_numpy(y),
        seed_featurewise(to_numpy(x), 2.0, 1.0, 0.5, 1.5, EPSILON),
        rtol=1e-6,
    )


def test_statistics_of_a_static_empty_batch_are_finite():
    """A batch of shape (0, C), known when traced: the count's floor of 1
    gives statistics 0 and sqrt(epsilon), not 0/0, and finite gradients."""
    with dtype_scope("float64"):
        x = keras.ops.zeros((0, 3), "float64")
        epsilon = keras.ops.convert_to_tensor(EPSILON, "float64")
        mean, std = functional.batch_moments(x, (0,), epsilon)
        np.testing.assert_array_equal(to_numpy(mean), np.zeros((1, 3)))
        np.testing.assert_allclose(to_numpy(std), np.full((1, 3), np.sqrt(EPSILON)))
        gamma, beta = np.ones((1, 3)), np.zeros((1, 3))
        y, mean, std = functional.featurewise_train(x, gamma, beta, (0,), epsilon)
        assert tuple(y.shape) == (0, 3)
        np.testing.assert_allclose(to_numpy(std), np.full((1, 3), np.sqrt(EPSILON)))

        def function(x, gamma, beta):
            return functional.featurewise_train(x, gamma, beta, (0,), epsilon)[0]

        grads = gradients(function, np.zeros((0, 3)), np.zeros((0, 3)), gamma, beta)
        for grad in grads:
            assert np.all(np.isfinite(grad))
