"""Recurrent layers' arrays from legacy files, in Keras 3's layout.

Keras 1.x stored a GRU or LSTM one array per gate (``consume_less="cpu"``
or ``"mem"``, the default): ``<layer>_W_i``, ``_U_i``, ``_b_i``, then the
next gate (an LSTM's in the order i, c, f, o; a GRU's z, r, h). Keras 3,
like Keras 2 and Keras 1's ``consume_less="gpu"``, keeps three arrays whose
columns hold the gates side by side: an LSTM's i, f, c, o, a GRU's z, r,
h (with ``reset_after=False``, as Keras 1 computed). The gate is read from
each array's name, so the order in the file does not matter. A
Bidirectional layer's arrays are its forward layer's, then its backward
layer's, each converted likewise. CuDNNGRU and CuDNNLSTM arrays are
converted as Keras 2.2 itself did. Anything else is returned as it is.
"""

import re

import keras
import numpy as np

__all__ = ["convert"]

_GATES = {"LSTM": "ifco", "GRU": "zrh", "ConvLSTM2D": "ifco"}
_PER_GATE = re.compile(r"_([WUb])_([a-z])(?:_[0-9]+)?(?::[0-9]+)?$")


def _per_gate(names, arrays, gates):
    """``[kernel, recurrent_kernel, bias]`` from per-gate arrays, or None
    where the names are not exactly one W, U and b per gate."""
    found = {}
    for name, array in zip(names, arrays):
        match = _PER_GATE.search(name)
        if match is None:
            return None
        found[match.groups()] = array
    wanted = [(kind, gate) for kind in "WUb" for gate in gates]
    if sorted(found) != sorted(wanted) or len(found) != len(arrays):
        return None
    return [
        np.concatenate([np.asarray(found[kind, gate]) for gate in gates], axis=-1)
        for kind in "WUb"
    ]


def _channels_last(arrays, target, ordering):
    """A Keras 1 ConvLSTM2D's per-gate kernels in Keras 3's layout: ``th``
    stored ``(filters, channels, rows, cols)``, ``tf`` ``(rows, cols,
    channels, filters)``; told by the shapes, else by ``ordering``."""
    rows, cols, _, gates_filters = tuple(target.cell.kernel.shape)
    filters = gates_filters // 4
    out = []
    for array in arrays:
        array = np.asarray(array)
        if array.ndim == 4:
            shape = array.shape
            fits_tf = shape[:2] == (rows, cols) and shape[3] == filters
            fits_th = shape[0] == filters and shape[2:] == (rows, cols)
            if fits_th and (not fits_tf or ordering == "th"):
                array = np.transpose(array, (2, 3, 1, 0))
        out.append(array)
    return out


def convert(source_names, arrays, target, ordering=None):
    """The arrays for ``target``'s variables, per-gate Keras 1.x arrays
    regrouped; ``source_names``: the file's names for them; ``ordering``:
    the file's ``dim_ordering`` where known (a Keras 1 ConvLSTM2D whose
    kernels fit both layouts)."""
    if isinstance(target, keras.layers.Bidirectional):
        half = len(arrays) // 2
        if half * 2 != len(arrays):
            return arrays
        forward = convert(source_names[:half], arrays[:half], target.forward_layer)
        backward = convert(source_names[half:], arrays[half:], target.backward_layer)
        if forward == arrays[:half] and backward == arrays[half:]:
            return arrays
        return [*forward, *backward]
    gates = _GATES.get(type(target).__name__)
    if gates is None:
        return arrays
    if len(arrays) == 3 and _is_cudnn(arrays, len(gates)):
        return _from_cudnn(arrays, len(gates), type(target).__name__)
    if len(arrays) != 3 * len(gates):
        return arrays
    if isinstance(target, keras.layers.ConvLSTM2D):
        laid_out = _channels_last(arrays, target, ordering)
        return _per_gate(source_names, laid_out, gates) or arrays
    return _per_gate(source_names, arrays, gates) or arrays


def _is_cudnn(arrays, gates):
    """CuDNNGRU/CuDNNLSTM (Keras 2.1.3 to 2.3) kept two biases (input and
    recurrent), side by side in one array."""
    shape = np.shape(arrays[1])
    return len(shape) == 2 and np.shape(arrays[2]) == (2 * shape[0] * gates,)


def _from_cudnn(arrays, gates, kind):
    """Keras 2.2's own conversion (``_convert_rnn_weights``): cuDNN's input
    kernel holds each gate's matrix in Fortran order and its recurrent
    kernel each gate's transposed; an LSTM adds the two biases, a GRU
    (``reset_after=True``) keeps them as two rows."""
    kernel, recurrent_kernel, bias = (np.asarray(array) for array in arrays)
    kernel = np.hstack(
        [k.T.reshape(k.shape, order="F") for k in np.hsplit(kernel, gates)]
    )
    recurrent_kernel = np.hstack([k.T for k in np.hsplit(recurrent_kernel, gates)])
    if kind == "LSTM":
        bias = np.sum(np.split(bias, 2, axis=0), axis=0)
    else:
        bias = bias.reshape((2, -1))
    return [kernel, recurrent_kernel, bias]
