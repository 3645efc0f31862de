"""What each Keras release meant by its BatchNormalization arrays.

A release's BatchNormalization kept a running std or a running variance
(its "fourth array") and put its epsilon in one place or another; its
default epsilon changed too. Here, from a file's Keras version and
backend (or the caller's word where the file does not tell), how the source
normalized at inference: the table of docs/legacy.md, "What each release
computed".

Nothing here reads files or touches models.
"""

import re

__all__ = ["source_form", "version_epsilon", "version_form", "version_tuple"]


def version_tuple(keras_version):
    """``(major, minor, patch)`` from a version text, or None."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", keras_version or "")
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def version_epsilon(version):
    """A Keras version's default BatchNormalization epsilon."""
    if version < (1, 0, 8):
        return 1e-6
    return 1e-5 if version < (1, 2, 0) else 1e-3


def version_form(version, backend, keras_version):
    """How a Keras version's BatchNormalization used its fourth array."""
    if version < (1, 0, 6):
        return "std"
    if version >= (1, 1, 0):
        return "variance"
    if backend not in ("theano", "tensorflow"):
        raise ValueError(
            f"running_std: Keras {keras_version} kept a std with Theano and a "
            "variance with TensorFlow, and this file does not tell its backend. "
            'Pass running_std="std" or running_std="variance".'
        )
    if version == (1, 0, 6):
        return "std" if backend == "theano" else "variance"
    # 1.0.7 and 1.0.8: Theano added epsilon outside the square root.
    return "theano_variance" if backend == "theano" else "variance"


def source_form(weights, running_std, keras_version):
    """``(form, default epsilon or None)`` for the file's BatchNormalizations:
    the caller's ``running_std`` where given, else the file's version's."""
    if weights.format.startswith("keras0"):
        # Every Keras 0.x kept a std, with epsilon 1e-6 by default.
        return ("std" if running_std == "auto" else running_std), 1e-6
    version_text = weights.keras_version or keras_version
    version = version_tuple(version_text)
    if version is not None:
        if running_std == "auto":
            running_std = version_form(version, weights.backend, version_text)
        return running_std, version_epsilon(version)
    if running_std == "auto":
        raise ValueError(
            f"running_std: {weights.path!r} is a Keras 1.x weights file, which "
            "does not record its Keras version, so it cannot tell whether its "
            "BatchNormalization running_std arrays are standard deviations "
            "(Keras 1.0.5 and earlier, 1.0.6 with Theano) or variances (1.0.6 "
            'with TensorFlow, 1.0.7 and later). Pass running_std="std" or '
            'running_std="variance" (with the epsilon= the layers used), or '
            'keras_version="1.x.y".'
        )
    # Every Keras that kept a std used epsilon 1e-6; the variance versions
    # differ (1e-6, 1e-5, 1e-3).
    return running_std, (1e-6 if running_std == "std" else None)
