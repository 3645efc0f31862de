"""JAX replacements for functional.py's generic math (see the table in
``keras_bn/_backend/__init__.py``)."""

import jax


def differentiable(rules):
    """functional's ``_differentiable`` as a ``jax.custom_jvp``.

    ``keras.ops.custom_gradient`` is a ``jax.custom_vjp`` on JAX, which
    neither forward mode (``jvp``, ``jacfwd``, ``hessian``) nor closures over
    traced values (``grad`` of ``jit``, ``checkpoint``, ``scan``) survive,
    and whose backward pass is a constant to a second derivative. A custom
    JVP has none of these limits: the statistics are computed inside the
    rule, JAX transposes the (linear) tangent rule into the reverse pass,
    and a higher derivative differentiates the rule itself.
    """

    @jax.custom_jvp
    def function(x, gamma, beta, epsilon):
        stats = rules.statistics(x, epsilon)
        return (rules.normalize(x, gamma, beta, epsilon, stats), *stats)

    @function.defjvp
    def _(primals, tangents):
        x, gamma, beta, epsilon = primals
        tx, tgamma, tbeta, _ = tangents  # epsilon is a constant
        stats = rules.statistics(x, epsilon)
        outputs = (rules.normalize(x, gamma, beta, epsilon, stats), *stats)
        return outputs, rules.tangent(x, gamma, beta, epsilon, stats, tx, tgamma, tbeta)

    return function
