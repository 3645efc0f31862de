"""PyTorch replacements for functional.py's generic math (see the table in
``keras_bn/_backend/__init__.py``).

Eager PyTorch runs each ``keras.ops`` call as its own kernel, behind Keras'
dispatch; the layer's ``call`` runs every step. These functions call torch
directly and compute what their generic forms compute.
"""

import math

import torch


def multiply_add(x, scale, offset):
    """``x * scale + offset`` in one fused kernel, with no full-size
    temporary between the multiply and the add."""

    def tensor(t):
        return torch.as_tensor(t, dtype=x.dtype, device=x.device)

    return torch.addcmul(tensor(offset), x, tensor(scale))


# The most rows one of ATen's float32 running sums may take in `moments`:
# past about 2^24 / |mean| rows its rounding swamps the spread (below).
_GROUP_ROWS = 1024


def moments(x, axes, count):
    """Mean and population variance over ``axes`` (kept as size-1 dims), as
    functional's generic ``_moments`` computes them.

    On the CPU, where no gradient is taken through them (the closed form's
    forward pass), ATen's batch-norm statistics kernel: two reads of ``x``
    and no full-size temporary, where the generic form makes four reads, two
    writes and a temporary. That kernel is exact enough in one layout only.
    With the features not last (NCHW), it sums in float64. With the features
    last (2-D, NHWC) it sums each feature's rows one after another in
    float32, and against a large mean that rounding swamps the spread (2^20
    rows of mean 1000 and std 1: a mean off by 10 std). There the rows are
    viewed as interleaved groups of at most `_GROUP_ROWS` rows, one
    pseudo-feature per group and feature (a view: no copy), and the groups'
    statistics are combined exactly (Chan et al.): as accurate as two
    passes of ``torch.sum``.

    Elsewhere (a derivative or a ``torch.func`` transform through the
    statistics, another device, other dtypes), two passes with
    ``torch.sum``, the squares taken in place where nothing differentiates
    them.
    """
    plain = not _differentiated(x)
    layout = _feature_layout(x, axes)
    if (
        not plain
        or layout is None
        or x.numel() == 0
        or x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
    ):
        return _two_pass_moments(x, axes, count, in_place=plain)
    reduced = {a % x.ndim for a in axes}
    shape = [1 if a in reduced else size for a, size in enumerate(x.shape)]
    rows, features, columns = layout
    # The kernel reads its input in place only when it is contiguous.
    if columns > 1:
        mean, variance = _kernel_statistics(x.reshape(layout).contiguous())
    else:
        mean, variance = _grouped_statistics(x.reshape(rows, features).contiguous())
    return mean.reshape(shape), variance.reshape(shape)


def _differentiated(x):
    """Whether a derivative or a transform flows through ``x``: autograd
    records it, forward-mode autodiff carries a tangent on it, or a
    ``torch.func`` transform (vmap, grad, jvp) wraps it. The kernel has no
    derivative and no batching rule, and in-place operations break these."""
    return (
        (torch.is_grad_enabled() and x.requires_grad)
        or torch.autograd.forward_ad.unpack_dual(x).tangent is not None
        or torch._C._functorch.is_functorch_wrapped_tensor(x)
    )


def _kernel_statistics(x):
    """Per-feature (axis 1) mean and population variance from ATen's
    batch-norm statistics kernel."""
    return torch.batch_norm_update_stats(x, None, None, 0.0)


def _grouped_statistics(x):
    """Per-column mean and population variance of a 2-D ``x`` whose ATen
    sums would run over more than `_GROUP_ROWS` rows: rows ``k, k + g,
    k + 2g, ...`` form group ``k`` of ``g`` groups (the first ``g * (rows //
    g)`` rows viewed as ``(rows // g, g * features)``), the rows left over
    one group more; each group's statistics come from the kernel, then
    ``mean = sum(n_k * mean_k) / n`` and ``variance = sum(n_k * (var_k +
    (mean_k - mean)**2)) / n``."""
    rows, features = x.shape
    groups = -(-rows // _GROUP_ROWS)
    if groups == 1:
        return _kernel_statistics(x)
    group_rows = rows // groups
    whole = groups * group_rows
    mean, variance = _kernel_statistics(x[:whole].view(group_rows, groups * features))
    means = [mean.view(groups, features)]
    variances = [variance.view(groups, features)]
    counts = [torch.full((groups, 1), group_rows, dtype=x.dtype)]
    if whole < rows:  # fewer rows than groups: one more group
        mean, variance = _kernel_statistics(x[whole:])
        means.append(mean.view(1, features))
        variances.append(variance.view(1, features))
        counts.append(torch.full((1, 1), rows - whole, dtype=x.dtype))
    means, variances, counts = (
        torch.cat(means),
        torch.cat(variances),
        torch.cat(counts),
    )
    mean = torch.sum(counts * means, dim=0) / rows
    spread = variances + (means - mean).square_()
    return mean, torch.sum(counts * spread, dim=0) / rows


def _two_pass_moments(x, axes, count, in_place):
    """functional's generic two passes in torch calls: the mean, then the
    squared deviations from it, squared in place (one full-size temporary
    fewer) where ``in_place``."""
    mean = torch.sum(x, dim=axes, keepdim=True) / count
    deviations = x - mean
    squares = deviations.square_() if in_place else deviations.square()
    return mean, torch.sum(squares, dim=axes, keepdim=True) / count


def featurewise_backward(upstream, x, gamma, mean, std, epsilon, axes):
    """Mode 0's closed-form gradient (functional's generic
    ``_featurewise_backward``) in PyTorch's fused batch-norm backward
    kernel. Returns ``dx``, ``sum(dy * (x - mean))`` and ``sum(dy)``, or
    None where the feature axes are not one run of adjacent axes (the
    kernel's layout) or the batch is empty, which leaves the generic form.

    With weight ``w`` and inverse std ``i``, the kernel computes, in two
    passes over ``dy`` and ``x``,
    ``dx = w * i * (dy - mean(dy) - (x - m) * i**2 * mean(dy * (x - m)))``,
    ``dw = i * sum(dy * (x - m))`` and ``db = sum(dy)``. The seed's gradient
    is this with ``i**2 = 1 / (std * (std + eps))`` and
    ``w * i = gamma / (std + eps)``, that is ``i = 1 / sqrt(std * (std + eps))``
    and ``w = gamma * sqrt(std / (std + eps))``.
    """
    layout = _feature_layout(x, axes)
    if layout is None or x.numel() == 0:
        # The kernel divides by the row count: an empty batch would kill the
        # process (SIGFPE). The generic form handles it.
        return None
    if layout[2] == 1:
        # Features last: the 2-D view takes the kernel's vectorized
        # channels-last path.
        layout = layout[:2]
    shape = mean.shape
    invstd = torch.rsqrt(std * (std + epsilon))
    weight = torch.broadcast_to(gamma, shape) * torch.sqrt(std / (std + epsilon))
    dx, dw, db = torch.ops.aten.native_batch_norm_backward(
        upstream.reshape(layout),
        x.reshape(layout),
        weight.reshape(-1),
        None,
        None,
        mean.reshape(-1),
        invstd.reshape(-1),
        True,
        0.0,
        [True, True, True],
    )
    return dx.reshape(x.shape), dw.reshape(shape) / invstd, db.reshape(shape)


def _feature_layout(x, axes):
    """``(rows, features, columns)``: the shape that views ``x`` as
    PyTorch's batch-norm kernels take it (NCL), with the statistics over
    rows and columns; None when the axes kept (the features) are not one
    run of adjacent axes."""
    ndim = len(x.shape)
    axes = {a % ndim for a in axes}
    features = [a for a in range(ndim) if a not in axes]
    if not features or features[-1] - features[0] != len(features) - 1:
        return None
    return (
        math.prod(x.shape[: features[0]]),
        math.prod(x.shape[features[0] : features[-1] + 1]),
        math.prod(x.shape[features[-1] + 1 :]),
    )


def inference_context():
    """No autograd graph for eager forward passes that need no gradient."""
    return torch.no_grad()


def reshape(t, shape):
    """``t.reshape(shape)``, without Keras' dispatch (about 0.17 ms a call
    here, on per-feature vectors)."""
    return t.reshape(shape)


def detached_like(value, like):
    """``value`` with no gradient, in ``like``'s shape and dtype: one torch
    call where the generic form makes three Keras dispatches."""
    return value.detach().reshape(like.shape).to(like.dtype)


def constant_like(value, like):
    """A Python number as a tensor of ``like``'s dtype and device:
    ``torch.as_tensor`` takes microseconds where Keras' conversion takes
    tens."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def differentiable(rules):
    """functional's ``_differentiable`` as a ``torch.autograd.Function``.

    Keras' ``custom_gradient`` on PyTorch is an ``autograd.Function``
    without ``setup_context``, which ``torch.func``'s transforms refuse,
    and whose backward pass sees statistics computed without a graph. This
    one has a ``jvp`` (forward mode), a generated vmap rule, and a backward
    pass that, when it is itself differentiated (``create_graph=True``),
    recomputes the statistics with a graph and uses plain operations
    instead of the fused first-order kernel.
    """

    def function(x, gamma, beta, epsilon):
        # A tensor, as the context saves only tensors.
        epsilon = torch.as_tensor(epsilon, dtype=x.dtype, device=x.device)
        return _ClosedForm.apply(rules, x, gamma, beta, epsilon)

    return function


class _ClosedForm(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(rules, x, gamma, beta, epsilon):
        stats = rules.statistics(x, epsilon)
        return (rules.normalize(x, gamma, beta, epsilon, stats), *stats)

    @staticmethod
    def setup_context(ctx, inputs, output):
        rules, x, gamma, beta, epsilon = inputs
        stats = output[1:]
        # The statistics feed the running estimates, never a gradient.
        ctx.mark_non_differentiable(*stats)
        ctx.rules = rules
        ctx.save_for_backward(x, gamma, beta, epsilon, *stats)
        ctx.save_for_forward(x, gamma, beta, epsilon, *stats)

    @staticmethod
    def backward(ctx, upstream, *_):
        x, gamma, beta, epsilon, *stats = ctx.saved_tensors
        higher_order = torch.is_grad_enabled()
        if higher_order:
            # This gradient will be differentiated: its dependence on x
            # through the statistics must be on the graph.
            stats = ctx.rules.statistics(x, epsilon)
        dx, dgamma, dbeta = ctx.rules.backward(
            upstream, x, gamma, beta, epsilon, stats, not higher_order
        )
        return None, dx, dgamma, dbeta, None

    @staticmethod
    def jvp(ctx, _, tx, tgamma, tbeta, __):
        x, gamma, beta, epsilon, *stats = ctx.saved_tensors

        def tangent(t, like):
            return torch.zeros_like(like) if t is None else t

        t_y, *t_stats = ctx.rules.tangent(
            x,
            gamma,
            beta,
            epsilon,
            stats,
            tangent(tx, x),
            tangent(tgamma, gamma),
            tangent(tbeta, beta),
        )
        # None for the statistics, which are marked non-differentiable.
        return (t_y, *(None for _ in t_stats))
