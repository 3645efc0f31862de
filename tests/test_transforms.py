"""The layer under the transforms users apply to it, against autodiff of the
plain formula.

Gradient penalties (WGAN-GP), MAML, Hessian-vector products and influence
functions differentiate a training call twice or more; JAX users jit,
rematerialize, scan, vmap and run forward mode; TensorFlow users nest tapes
and use ``ForwardAccumulator``; PyTorch users pass ``create_graph=True`` or
use ``torch.func``. The layer differentiates in closed form (for speed); each
test here compares it, in float64, with the backend's own autodiff of the
seed's formula written in plain operations (``plain_output``, below: no
custom gradient), to a relative error of 1e-8.

Also here: integer inputs (the float result, as a Keras layer casts them),
and the dtypes refused.
"""

import contextlib
import math

import keras
import numpy as np
import pytest
from conftest import BACKEND, dtype_scope, to_numpy
from keras import ops

from keras_bn import BatchNormalization

EPSILON = 1e-3
TOLERANCE = 1e-8

# id: (layer options, input shape)
CASES = {
    "mode0-dense": (dict(), (8, 3)),
    "mode0-image-axis-1": (dict(axis=-1), (4, 3, 2, 3)),
    "mode0-channels-first": (dict(axis=1), (4, 3, 2, 2)),
    "mode0-ghost-batches": (dict(axis=-1, virtual_batch_size=4), (8, 3)),
    # One feature, sizes of one: every shape keeps its axes.
    "mode0-one-feature-ghost-batches": (dict(axis=-1, virtual_batch_size=4), (8, 1, 1)),
    "mode1": (dict(mode=1), (6, 5)),
    "mode1-epsilon-in-root": (dict(mode=1, samplewise_epsilon_in_root=True), (6, 5)),
    "mode2-image-axis-1": (dict(mode=2, axis=-1), (4, 3, 2, 3)),
}


def plain_output(options, x, gamma, beta):
    """The seed's training output in plain keras.ops: what autodiff
    differentiates for the expected values (docs/semantics.md)."""
    ndim = len(x.shape)
    if options.get("mode", 0) == 1:
        count = x.shape[-1]
        mean = ops.sum(x, axis=-1, keepdims=True) / count
        variance = ops.sum(ops.square(x - mean), axis=-1, keepdims=True) / count
        if options.get("samplewise_epsilon_in_root"):
            variance = variance + EPSILON
        return gamma * (x - mean) / (ops.sqrt(variance) + EPSILON) + beta
    axis = options.get("axis")
    features = range(1, ndim) if axis is None else [axis % ndim]
    shape = [x.shape[a] if a in features else 1 for a in range(ndim)]
    gamma, beta = ops.reshape(gamma, shape), ops.reshape(beta, shape)
    ghost = options.get("virtual_batch_size")
    if ghost:
        # Each ghost batch has its own statistics: the ghost axis is kept.
        x = ops.reshape(x, (-1, ghost, *x.shape[1:]))
        features = [0] + [a + 1 for a in features]
    axes = tuple(a for a in range(len(x.shape)) if a not in features)
    count = math.prod(x.shape[a] for a in axes)
    mean = ops.sum(x, axis=axes, keepdims=True) / count
    variance = ops.sum(ops.square(x - mean), axis=axes, keepdims=True) / count
    std = ops.sqrt(variance + EPSILON)
    # Keras 1.x's mode 2 adds epsilon inside the root only.
    y = (x - mean) / (std if options.get("mode") == 2 else std + EPSILON)
    if ghost:
        y = ops.reshape(y, (-1, *y.shape[2:]))
    return gamma * y + beta


def make_case(case, rng):
    """The layer (float64, built), its ``f(x, params)`` for a training call
    (``params = [gamma, beta]``, through ``stateless_call``), the plain
    formula's, and float64 inputs."""
    options, shape = CASES[case]
    layer = BatchNormalization(epsilon=EPSILON, dtype="float64", **options)
    layer.build(shape)
    params = [
        rng.uniform(0.5, 1.5, layer.gamma.shape),
        rng.normal(size=layer.beta.shape),
    ]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def ours(x, gamma, beta):
        y, _ = layer.stateless_call([gamma, beta], non_trainable, x, training=True)
        return y

    def plain(x, gamma, beta):
        return plain_output(options, x, gamma, beta)

    x = rng.normal(1.0, 2.0, size=shape)
    return ours, plain, [x, *params]


def relative_error(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    return np.max(np.abs(got - expected)) / np.max(np.abs(expected))


def assert_close(got, expected):
    """Each array within TOLERANCE of its own largest value; an array that
    is zero by the formula (beta's part of a second derivative), within
    TOLERANCE of the largest value of the list."""
    got = [to_numpy(g) for g in got]
    expected = [to_numpy(e) for e in expected]
    overall = max(np.max(np.abs(e)) for e in expected)
    assert overall > 0
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        scale = max(np.max(np.abs(e)), overall * 1e-3)
        assert np.max(np.abs(g - e)) <= TOLERANCE * scale


# -- each backend's autodiff, as composable functions ---------------------------


def tensors(values):
    """NumPy inputs as backend tensors (leaves that take gradients on
    PyTorch)."""
    if BACKEND == "torch":
        import torch

        return [torch.tensor(v, requires_grad=True) for v in values]
    return [ops.convert_to_tensor(v) for v in values]


def grad(function):
    """Reverse mode: the gradient of the scalar ``function`` for each of its
    arguments, itself differentiable again (any order)."""
    if BACKEND == "jax":
        import jax

        def gradient(*args):
            return list(jax.grad(function, argnums=tuple(range(len(args))))(*args))

        return gradient
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def gradient(*args):
            with tf.GradientTape() as tape:
                tape.watch(args)
                value = function(*args)
            return tape.gradient(
                value, list(args), unconnected_gradients=tf.UnconnectedGradients.ZERO
            )

        return gradient
    import torch

    def gradient(*args):
        # beta's part of a second derivative is unused: zeros, as elsewhere.
        return list(
            torch.autograd.grad(
                function(*args),
                args,
                create_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
        )

    return gradient


def jvp(function, primals, tangents):
    """Forward mode: ``function``'s outputs' tangents (a list)."""
    if BACKEND == "jax":
        import jax

        _, out = jax.jvp(function, tuple(primals), tuple(tangents))
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.autodiff.ForwardAccumulator(list(primals), list(tangents)) as acc:
            outputs = function(*primals)
        out = acc.jvp(outputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    else:
        import torch

        _, out = torch.func.jvp(function, tuple(primals), tuple(tangents))
    return list(out) if isinstance(out, (list, tuple)) else [out]


def loss(f, upstream):
    """``L = sum(f(x, gamma, beta) * upstream)``."""

    def value(*args):
        return ops.sum(f(*args) * upstream)

    return value


def penalty(f, upstream):
    """A gradient penalty: ``sum((dL/dx)**2)``."""

    def value(*args):
        return ops.sum(ops.square(grad(loss(f, upstream))(*args)[0]))

    return value


# The fast suite's cases: one per code path (a dense batch, features not
# last, samplewise, mode 2); CI runs every case on every backend.
FAST_CASES = {"mode0-dense", "mode0-channels-first", "mode1", "mode2-image-axis-1"}


@pytest.fixture(
    params=[
        pytest.param(name, marks=() if name in FAST_CASES else pytest.mark.slow)
        for name in sorted(CASES)
    ]
)
def case(request, rng):
    with dtype_scope("float64"):
        yield make_case(request.param, rng)


# -- orders and modes, on every backend -------------------------------------------


def test_first_order(case, rng):
    ours, plain, values = case
    upstream = ops.convert_to_tensor(rng.normal(size=values[0].shape))
    with dtype_scope("float64"):
        assert_close(
            grad(loss(ours, upstream))(*tensors(values)),
            grad(loss(plain, upstream))(*tensors(values)),
        )


def test_gradient_penalty_second_order(case, rng):
    """d/d(x, gamma, beta) of sum((dL/dx)**2): the dependence of the
    backward pass on x, through the batch statistics, is part of it."""
    ours, plain, values = case
    upstream = ops.convert_to_tensor(rng.normal(size=values[0].shape))
    with dtype_scope("float64"):
        got = grad(penalty(ours, upstream))(*tensors(values))
        expected = grad(penalty(plain, upstream))(*tensors(values))
        assert_close(got, expected)
        # Not zero: the second-order terms are there to get wrong.
        assert np.max(np.abs(to_numpy(expected[0]))) > 1e-3


def test_third_order(case, rng):
    ours, plain, values = case
    upstream = ops.convert_to_tensor(rng.normal(size=values[0].shape))
    direction = ops.convert_to_tensor(rng.normal(size=values[0].shape))

    def third(f):
        def projected(*args):
            return ops.sum(grad(penalty(f, upstream))(*args)[0] * direction)

        return grad(projected)

    with dtype_scope("float64"):
        assert_close(third(ours)(*tensors(values)), third(plain)(*tensors(values)))


def test_forward_mode(case, rng):
    ours, plain, values = case
    tangents = [rng.normal(size=np.shape(v)) for v in values]
    with dtype_scope("float64"):
        assert_close(
            jvp(ours, tensors(values), tensors(tangents)),
            jvp(plain, tensors(values), tensors(tangents)),
        )


def test_hessian_vector_product(case, rng):
    """Forward over reverse: the JVP of the gradient."""
    ours, plain, values = case
    upstream = ops.convert_to_tensor(rng.normal(size=values[0].shape))
    tangents = [rng.normal(size=np.shape(v)) for v in values]
    if BACKEND == "torch":
        # torch.func's forward mode over its own reverse mode (autograd's
        # create_graph does not compose with forward-mode dual tensors).
        import torch

        def hvp(f):
            def gradient(*args):
                return torch.func.grad(loss(f, upstream), argnums=(0, 1, 2))(*args)

            return jvp(gradient, tensors(values), tensors(tangents))

    else:

        def hvp(f):
            return jvp(grad(loss(f, upstream)), tensors(values), tensors(tangents))

    with dtype_scope("float64"):
        assert_close(hvp(ours), hvp(plain))


# -- the layer's own call, with running estimates, on each backend -----------------


@pytest.mark.parametrize("mode", [0, 1])
def test_gradient_penalty_through_the_layer_call(rng, mode):
    """Called as users call it (the layer's variables, training=True), the
    penalty's gradients for x and for gamma and beta match the plain
    formula's; the running estimates still update once per call."""
    x = rng.normal(1.0, 2.0, size=(6, 4))
    upstream_np = rng.normal(size=(6, 4))
    options = {"mode": mode}
    with dtype_scope("float64"):
        layer = BatchNormalization((4,), EPSILON, mode, momentum=0.5, dtype="float64")
        gamma, beta = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
        layer.set_weights([gamma, beta, np.zeros(4), np.ones(4)])
        upstream = ops.convert_to_tensor(upstream_np)
        expected = grad(penalty(lambda *a: plain_output(options, *a), upstream))(
            *tensors([x, gamma, beta])
        )
        if BACKEND == "tensorflow":
            import tensorflow as tf

            inputs = tf.constant(x)
            with tf.GradientTape() as outer:
                outer.watch(inputs)
                with tf.GradientTape() as inner:
                    inner.watch(inputs)
                    value = tf.reduce_sum(layer(inputs, training=True) * upstream)
                gx = inner.gradient(value, inputs)
                value = tf.reduce_sum(gx**2)
            got = outer.gradient(
                value,
                [inputs, layer.gamma.value, layer.beta.value],
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
        elif BACKEND == "torch":
            import torch

            inputs = torch.tensor(x, requires_grad=True)
            value = torch.sum(layer(inputs, training=True) * upstream)
            (gx,) = torch.autograd.grad(value, inputs, create_graph=True)
            torch.sum(gx**2).backward()
            # beta's part is zero, and unused: no gradient is accumulated.
            beta_grad = layer.beta.value.grad
            if beta_grad is None:
                beta_grad = torch.zeros_like(layer.beta.value)
            got = [inputs.grad, layer.gamma.value.grad, beta_grad]
        else:
            import jax

            def call(x, params):
                y, updated = layer.stateless_call(
                    params,
                    [v.value for v in layer.non_trainable_variables],
                    x,
                    training=True,
                )
                return y, updated

            def penalty_value(x, params):
                gx = jax.grad(lambda x: ops.sum(call(x, params)[0] * upstream))(x)
                return ops.sum(gx**2)

            params = [layer.gamma.value, layer.beta.value]
            gx, gparams = jax.grad(penalty_value, argnums=(0, 1))(x, params)
            got = [gx, *gparams]
            _, updated = call(x, params)
            for variable, value in zip(layer.non_trainable_variables, updated):
                variable.assign(value)
        assert_close(got, expected)
        # One training call's update on TensorFlow and PyTorch (the call
        # ran once; a penalty differentiates it, it does not rerun it).
        batch_mean = x.mean(axis=0) if mode == 0 else None
        if batch_mean is not None:
            np.testing.assert_allclose(
                layer.get_weights()[2], 0.5 * batch_mean, rtol=1e-12
            )


# -- JAX's transforms ---------------------------------------------------------------


jax_only = pytest.mark.skipif(BACKEND != "jax", reason="JAX's transforms")


@jax_only
@pytest.mark.parametrize(
    "transform",
    ["grad-of-jit", "jit-of-grad", "checkpoint", "vmap-of-grad", "jacfwd", "hessian"],
)
def test_jax_transforms(case, rng, transform):
    import jax

    ours, plain, values = case
    upstream = rng.normal(size=values[0].shape)
    x, gamma, beta = values

    def scalar(f):
        return lambda x: ops.sum(f(x, gamma, beta) * upstream)

    def apply(f):
        if transform == "grad-of-jit":
            return jax.grad(jax.jit(scalar(f)))(x)
        if transform == "jit-of-grad":
            return jax.jit(jax.grad(scalar(f)))(x)
        if transform == "checkpoint":
            return jax.grad(jax.checkpoint(scalar(f)))(x)
        if transform == "vmap-of-grad":
            # A batch of batches: each normalized on its own.
            stacked = np.stack([x, 2.0 * x - 1.0])
            return jax.vmap(jax.grad(scalar(f)))(stacked)
        if transform == "jacfwd":
            return jax.jacfwd(lambda x: f(x, gamma, beta))(x)
        return jax.hessian(scalar(f))(x)

    with dtype_scope("float64"):
        got, expected = apply(ours), apply(plain)
        assert relative_error(got, expected) <= TOLERANCE


@jax_only
def test_jax_gradient_through_a_scan_over_layers(rng):
    """``lax.scan`` applying the layer's training call three times (a scan
    over a stack of identical blocks), differentiated."""
    import jax

    with dtype_scope("float64"):
        ours, plain, (x, gamma, beta) = make_case("mode0-dense", rng)
        upstream = rng.normal(size=x.shape)

        def scanned(f):
            def body(carry, _):
                return f(carry, gamma, beta), None

            def value(x):
                out, _ = jax.lax.scan(body, x, None, length=3)
                return ops.sum(out * upstream)

            return value

        got = jax.grad(scanned(ours))(x)
        expected = jax.grad(scanned(plain))(x)
        assert relative_error(got, expected) <= TOLERANCE


@jax_only
def test_jax_remat_scope(rng):
    """Keras' ``RematScope`` (where the installed Keras has it) around a
    model's training step: gradients as without it."""
    if not hasattr(keras, "RematScope"):
        pytest.skip("this Keras has no RematScope")
    import jax

    x = rng.normal(size=(8, 5)).astype("float32")
    upstream = rng.normal(size=(8, 5)).astype("float32")

    def gradients(remat):
        keras.utils.set_random_seed(1)
        # The layers made in the scope (a model made there would trace its
        # own call's training flag, which fails the stock layer too).
        scope = keras.RematScope(mode="full") if remat else contextlib.nullcontext()
        with scope:
            dense, normalization = keras.layers.Dense(5), BatchNormalization()
        inputs = keras.Input((5,))
        model = keras.Model(inputs, normalization(dense(inputs)))
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def value(trainable):
            y, _ = model.stateless_call(trainable, non_trainable, x, training=True)
            return ops.sum(y * upstream)

        # The layers' calls are rematerialized (a checkpoint in the program).
        program = str(jax.make_jaxpr(jax.grad(value))(trainable))
        assert ("checkpoint" in program or "remat" in program) == remat
        return jax.grad(value)(trainable)

    for got, expected in zip(gradients(True), gradients(False), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# -- TensorFlow ------------------------------------------------------------------


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's graphs")
def test_tensorflow_second_order_inside_tf_function(case, rng):
    import tensorflow as tf

    ours, plain, values = case
    upstream = tf.constant(rng.normal(size=values[0].shape))

    def compiled(f):
        return tf.function(grad(penalty(f, upstream)))

    assert_close(compiled(ours)(*tensors(values)), compiled(plain)(*tensors(values)))


# -- PyTorch ---------------------------------------------------------------------


torch_only = pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's autograd")


@torch_only
def test_torch_gradgradcheck_in_training(case):
    import torch

    ours, _, values = case
    inputs = tuple(torch.tensor(v, requires_grad=True) for v in values)
    assert torch.autograd.gradcheck(ours, inputs)
    assert torch.autograd.gradgradcheck(ours, inputs)


@torch_only
@pytest.mark.parametrize("transform", ["grad", "grad-of-grad", "vmap", "jacrev"])
def test_torch_func_transforms(case, rng, transform):
    import torch

    ours, plain, values = case
    upstream = torch.tensor(rng.normal(size=values[0].shape))
    x, gamma, beta = (torch.tensor(v) for v in values)

    def scalar(f):
        return lambda x: torch.sum(f(x, gamma, beta) * upstream)

    def apply(f):
        if transform == "grad":
            return torch.func.grad(scalar(f))(x)
        if transform == "grad-of-grad":
            return torch.func.grad(
                lambda x: torch.sum(torch.func.grad(scalar(f))(x) ** 2)
            )(x)
        if transform == "vmap":
            stacked = torch.stack([x, 2.0 * x - 1.0])
            return torch.func.vmap(lambda x: f(x, gamma, beta))(stacked)
        return torch.func.jacrev(lambda x: f(x, gamma, beta))(x)

    assert relative_error(apply(ours).detach(), apply(plain).detach()) <= TOLERANCE


# -- input dtypes --------------------------------------------------------------------


INTEGER_DTYPES = ["uint8", "int32", "int64"]


def integer_case(rng):
    """uint8-range data of 16 samples of shape (3, 4), and a weight list
    whose running estimates fit such data."""
    data = rng.integers(0, 255, size=(16, 3, 4))
    weights = [
        rng.uniform(0.5, 1.5, (3, 4)),
        rng.normal(size=(3, 4)),
        rng.normal(100.0, 10.0, size=(3, 4)),
        rng.uniform(50.0, 80.0, (3, 4)),
    ]
    return data, weights


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("training", [False, True])
def test_integer_inputs_give_the_float_result(rng, dtype, mode, training):
    """Integers are cast to the layer's compute dtype first, as Keras layers
    cast: the same data as uint8 and as float32, through the same weights,
    give the same output and the same running estimates."""
    data, weights = integer_case(rng)
    results = {}
    for kind in ("float32", dtype):
        layer = BatchNormalization((3, 4), 1e-3, mode, weights=weights)
        y = layer(ops.convert_to_tensor(data.astype(kind)), training=training)
        assert keras.backend.standardize_dtype(y.dtype) == "float32"
        results[kind] = (to_numpy(y), layer.get_weights())
    np.testing.assert_array_equal(results[dtype][0], results["float32"][0])
    for got, expected in zip(results[dtype][1], results["float32"][1]):
        np.testing.assert_array_equal(got, expected)
    # And the float result is the formula's.
    if mode == 0 and not training:
        gamma, beta, mean, std = weights
        expected = gamma * (data - mean) / (std + 1e-3) + beta
        np.testing.assert_allclose(results[dtype][0], expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("training", [False, True])
def test_integer_inputs_in_a_compiled_model(rng, training):
    """A model with a uint8 input, through predict (inference) and
    train_on_batch (training), compiled where the backend compiles: as the
    float32 model."""
    data = rng.integers(0, 255, size=(32, 6)).astype("uint8")

    def model(dtype):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((6,), dtype=dtype)
        outputs = BatchNormalization(epsilon=1e-3, momentum=0.5)(inputs)
        model = keras.Model(inputs, outputs)
        model.compile("sgd", "mse")
        return model

    models = {dtype: model(dtype) for dtype in ("uint8", "float32")}
    for dtype, m in models.items():
        if training:
            m.train_on_batch(data.astype(dtype), np.zeros((32, 6), "float32"))
    got = models["uint8"].predict(data, verbose=0)
    expected = models["float32"].predict(data.astype("float32"), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    for a, b in zip(models["uint8"].get_weights(), models["float32"].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if training:
        # The running mean moved halfway to the batch mean.
        np.testing.assert_allclose(
            models["uint8"].layers[1].get_weights()[2],
            0.5 * data.mean(axis=0),
            rtol=1e-5,
        )


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_float_inputs_are_computed_in_their_dtype(rng, dtype):
    """float64 inputs to a float64 layer are computed in float64; half
    precision in float32 (and given back in the compute dtype)."""
    x = rng.normal(3.0, 2.0, size=(8, 3))
    with dtype_scope(dtype):
        layer = BatchNormalization((3,), 1e-3, dtype=dtype)
        y = to_numpy(layer(ops.convert_to_tensor(x, dtype), training=True))
    mean, std = x.mean(0), np.sqrt(x.var(0) + 1e-3)
    tolerance = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 2e-2}
    np.testing.assert_allclose(
        y, (x - mean) / (std + 1e-3), atol=tolerance[dtype] * 10, rtol=0
    )


@pytest.mark.parametrize("dtype", ["bool", "complex64", "string"])
@pytest.mark.parametrize("training", [False, True])
def test_bool_complex_and_string_inputs_are_refused(dtype, training):
    layer = BatchNormalization((3,))
    if dtype == "string":
        if BACKEND != "tensorflow":
            pytest.skip("string tensors are TensorFlow's")
        import tensorflow as tf

        x = tf.constant([["a", "b", "c"]] * 4)
    else:
        x = ops.convert_to_tensor(np.ones((4, 3), dtype=dtype))
    before = layer.get_weights()
    with pytest.raises(TypeError, match=f"inputs: .*got dtype {dtype}"):
        layer(x, training=training)
    for got, expected in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, expected)
