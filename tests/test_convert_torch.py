"""keras_bn.convert.from_torch against torch.nn.BatchNorm1d/2d/3d: the
converted layer's inference output must match the module's in float64 on
random inputs, on every Keras backend (PyTorch need not be the backend, only
installed; without it these tests skip)."""

import keras
import numpy as np
import pytest
from conftest import assert_exact, dtype_scope

from keras_bn import convert

torch = pytest.importorskip("torch")


# -- torch.nn.BatchNorm*d -> keras_bn --------------------------------------------

TORCH_CASES = [
    (torch.nn.BatchNorm1d, (16, 5)),
    (torch.nn.BatchNorm1d, (8, 5, 7)),
    (torch.nn.BatchNorm2d, (4, 5, 6, 3)),
    (torch.nn.BatchNorm3d, (2, 5, 3, 4, 2)),
]


def trained_module(kind, shape, rng, **kwargs):
    """A double-precision module with running statistics from a few
    training steps and random affine parameters, in eval mode."""
    torch.manual_seed(0)
    module = kind(shape[1], **kwargs).double()
    with torch.no_grad():
        for _ in range(3):
            module(torch.tensor(rng.normal(2.0, 3.0, size=shape)))
        if module.weight is not None:
            module.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, shape[1])))
        if module.bias is not None:
            module.bias.copy_(torch.tensor(rng.normal(size=shape[1])))
    return module.eval()


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
@pytest.mark.parametrize("kind, shape", TORCH_CASES)
def test_from_torch_is_exact_at_inference(rng, kind, shape, eps):
    module = trained_module(kind, shape, rng, eps=eps, momentum=0.3)
    x = rng.normal(1.0, 2.0, size=shape)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    with dtype_scope("float64"):
        layer = convert.from_torch(module)
        assert layer.epsilon == eps and layer.momentum == pytest.approx(0.7)
        assert layer.compute_dtype == "float64"
        assert_exact(layer(x, training=False), expected)


def test_from_torch_channels_last(rng):
    module = trained_module(torch.nn.BatchNorm2d, (4, 3, 5, 6), rng)
    x = rng.normal(size=(4, 3, 5, 6))
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy().transpose(0, 2, 3, 1)
    with dtype_scope("float64"):
        layer = convert.from_torch(module, axis=-1)
        assert_exact(layer(x.transpose(0, 2, 3, 1), training=False), expected)


@pytest.mark.parametrize(
    "kwargs, center, scale",
    [({"affine": False}, False, False), ({"bias": False}, False, True)],
)
def test_from_torch_without_affine_parameters(rng, kwargs, center, scale):
    module = trained_module(torch.nn.BatchNorm1d, (16, 4), rng, **kwargs)
    x = rng.normal(size=(16, 4))
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    with dtype_scope("float64"):
        layer = convert.from_torch(module)
        assert (layer.center, layer.scale) == (center, scale)
        assert_exact(layer(x, training=False), expected)


def test_from_torch_momentum_convention_matches_a_training_step(rng):
    """PyTorch's new = (1 - m) * old + m * batch is keras_bn's momentum 1 - m:
    after one training step from the same state, the running means agree.
    (The variances follow different formulas, unbiased against the seed's.)"""
    module = trained_module(torch.nn.BatchNorm1d, (32, 4), rng, momentum=0.25)
    with dtype_scope("float64"):
        layer = convert.from_torch(module)
        x = rng.normal(-1.0, 2.0, size=(32, 4))
        layer(x, training=True)
        module.train()
        with torch.no_grad():
            module(torch.tensor(x))
        np.testing.assert_allclose(
            layer.running_mean.numpy(), module.running_mean.numpy(), rtol=1e-12
        )


@pytest.mark.parametrize(
    "momentum, error", [(1.5, ValueError), (-0.1, ValueError), ("0.9", TypeError)]
)
def test_from_torch_refuses_a_bad_momentum(momentum, error):
    with pytest.raises(error, match=r"momentum: expected None or a number in \[0, 1\]"):
        convert.from_torch(torch.nn.BatchNorm1d(3), momentum=momentum)


def test_from_torch_cumulative_momentum_needs_a_choice(rng):
    module = trained_module(torch.nn.BatchNorm1d, (8, 3), rng, momentum=None)
    with pytest.raises(ValueError, match="momentum=0.9"):
        convert.from_torch(module)
    x = rng.normal(size=(8, 3))
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    with dtype_scope("float64"):
        layer = convert.from_torch(module, momentum=0.95)
        assert layer.momentum == 0.95
        assert_exact(layer(x, training=False), expected)


def test_from_torch_refuses_other_modules():
    with pytest.raises(ValueError, match="track_running_stats=False"):
        convert.from_torch(torch.nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(TypeError, match="BatchNorm1d, BatchNorm2d or BatchNorm3d"):
        convert.from_torch(torch.nn.LayerNorm(3))
    with pytest.raises(TypeError, match="BatchNorm1d"):
        convert.from_torch(keras.layers.BatchNormalization())
