"""Where a backend replaces keras_bn's generic math, and why.

`keras_bn.functional` states every formula once, in ``keras.ops``, and runs
on every backend as it is. A few operations have a faster (or, for the
replica sums, a distributed) form on one backend; `replacement` hands it to
functional.py, which otherwise uses its own generic form. This table is the
whole list, as Keras keeps ``backend/<name>/``:

============================  ==========  ===================================
operation (generic form)      backend     replacement, and why
============================  ==========  ===================================
``multiply_add``              torch       ``torch.addcmul``: eager PyTorch
(``x * scale + offset``)                  would run two kernels with a
                                          full-size temporary between them.
``moments`` (two-pass mean    torch       ATen's batch-norm statistics
and variance)                             kernel where nothing
                                          differentiates them (two reads,
                                          no temporary), a features-last
                                          batch in groups of at most 1024
                                          rows that keep its float32 sums
                                          exact; else ``torch.sum`` called
                                          directly, squares in place.
``featurewise_backward``      torch       ATen's fused
(mode 0's closed-form                     ``native_batch_norm_backward``:
gradient)                                 two passes over ``dy`` and ``x``
                                          in one kernel, where eager ops run
                                          five.
``inference_context``         torch       ``torch.no_grad()``: no autograd
(nothing)                                 graph for `recompute_statistics`'
                                          forward passes.
``reshape`` (``ops.reshape``)  torch       ``Tensor.reshape``: Keras'
                                          dispatch costs about 0.17 ms a call
                                          on eager PyTorch, more than the
                                          per-feature vectors it reshapes.
``constant_like`` (a Python   torch       ``torch.as_tensor``: epsilon and
number as a tensor, in                    the momentum on every step,
``ops.convert_to_tensor``)                without Keras' conversion.
``detached_like`` (reshape,   torch       ``detach().reshape().to()``: the
``stop_gradient`` and cast of             running estimates' update on every
a batch statistic to a                    training step, without three Keras
running estimate's form)                  dispatches per statistic.
``differentiable`` (mode 0    jax         ``jax.custom_jvp``: Keras'
and 1's closed forms, as                  ``custom_gradient`` is a
``custom_gradient`` with the              ``custom_vjp`` there, which
statistics outside it)                    forward mode, higher orders and
                                          closures over traced values
                                          (``grad`` of ``jit``,
                                          ``checkpoint``, ``scan``) break.
``differentiable``            torch       A ``torch.autograd.Function``
                                          with ``setup_context``, ``jvp``
                                          and a vmap rule (``torch.func``
                                          refuses Keras' one), whose
                                          backward pass is differentiable.
``sum`` (``ops.sum``, dims    tensorflow  Sums regrouped into wide rows:
kept)                                     TensorFlow's XLA sums a leading
                                          block of axes in scalar loops
                                          when the axes kept are narrow.
``sum_across_replicas``       tensorflow  ``tf.distribute`` all-reduce
(the sum as it is: on JAX                 under a distribution strategy
the batch is one global                   (``synchronized=True``).
array)
============================  ==========  ===================================

Each replacement computes what the generic form computes. The tests that
hold them together, each on the same inputs through both forms and against
NumPy (``tests/reference.py``), in ``tests/test_functional.py``:
``test_backend_replacements_match_the_generic_forms`` (``multiply_add``,
``sum``, ``moments``, ``featurewise_backward``, ``reshape``,
``constant_like``, ``detached_like``) and
``test_inference_context_replacement``; the replica sums, in
``tests/test_distributed.py``:
``test_tf_mirrored_strategy_synchronized_equals_single_device`` (two
replicas against one device).

Look-ups cost a dictionary access, no Keras dispatch: the layer's ``call``
asks on every step, and on eager PyTorch every dispatch shows.
"""

import importlib

__all__ = ["REPLACED", "replacement"]

# operation -> the backends that replace it (the table above).
REPLACED = {
    "differentiable": ("jax", "torch"),
    "multiply_add": ("torch",),
    "moments": ("torch",),
    "featurewise_backward": ("torch",),
    "inference_context": ("torch",),
    "reshape": ("torch",),
    "constant_like": ("torch",),
    "detached_like": ("torch",),
    "sum": ("tensorflow",),
    "sum_across_replicas": ("tensorflow",),
}

# backend name -> its module here, imported on first use only: importing
# keras_bn must not import PyTorch or TensorFlow for another backend.
_modules: dict[str, object] = {}


def replacement(operation):
    """The running backend's replacement for ``operation`` (a name in
    `REPLACED`), or None where the generic form in functional.py applies."""
    # Imported here, not at the top: importing Keras registers keras_bn's
    # classes (keras_bn/_registration.py), which imports functional.py,
    # which imports this module; from the top, ``import keras_bn._backend``
    # as a process's first import would find it half made.
    import keras

    backend = keras.backend.backend()
    if backend not in REPLACED[operation]:
        return None
    module = _modules.get(backend)
    if module is None:
        module = _modules[backend] = importlib.import_module(f"{__name__}.{backend}")
    return getattr(module, operation)
