"""The one exception of `keras_bn.legacy` and ``keras-bn inspect``."""

import reprlib

__all__ = ["LegacyFileError", "short_repr"]


class LegacyFileError(ValueError):
    """A legacy file cannot be read or loaded as asked.

    Every failure of `keras_bn.legacy.read_weights` and
    `keras_bn.legacy.load_weights` raises it (a missing file raises its
    subclass that is also a `FileNotFoundError`); it is a `ValueError`, so
    callers that caught that keep working. The message names the file, the
    layer and the field (attribute, array or argument) where it can, what was
    expected and what came.

    Attributes:
        path: The file, or None.
        layer: The file's layer concerned, or None.
        field: The attribute, array or argument concerned, or None.
    """

    def __init__(self, message, *, path=None, layer=None, field=None):
        self.path, self.layer, self.field = path, layer, field
        super().__init__(message if path is None else f"{path}: {message}")


class LegacyFileNotFoundError(LegacyFileError, FileNotFoundError):
    """No file at the path given."""


# Bounded at every level: an aliased YAML structure can be huge if walked
# whole.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def short_repr(value, limit=80):
    """``repr(value)``, at most ``limit`` characters: a message never carries
    a whole structure from an untrusted file."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
