"""The one exception of `keras_bn.legacy` and ``keras-bn inspect``."""

import re
import reprlib

__all__ = ["LegacyFileError", "plain_text", "short_repr"]


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
        # Keras' own errors, quoted in some messages, carry terminal styling
        # (bold names): plain text here, in a log as in a terminal.
        message = plain_text(str(message))
        super().__init__(message if path is None else f"{path}: {message}")


_TERMINAL_STYLE = re.compile(r"\x1b\[[0-9;]*m")


def plain_text(message):
    """``message`` without terminal styling (escape codes such as bold)."""
    return _TERMINAL_STYLE.sub("", message)


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
