"""The ``keras-bn`` command line.

``keras-bn inspect FILE`` (or ``python -m keras_bn.cli inspect FILE``) tells
what a legacy Keras HDF5 weights file holds: its format, the Keras version
and backend where known, what its BatchNormalization arrays mean (the
featurewise and samplewise formulas), the conversion its convolution kernels
get, and a table of its layers with their arrays' shapes. A file it cannot read gets a
one-line error (`keras_bn.legacy.LegacyFileError`'s message, never a
traceback) and exit status 1.

``keras-bn convert OLD NEW.keras [--weights W.h5] [--batch-normalization
keras_bn|keras] [--backend theano|tensorflow] [--overwrite] ...`` rebuilds an
old Keras model
(a whole-model HDF5 file, or a
``to_json()``/``to_yaml()`` architecture with ``--weights``) as a Keras 3
model with `keras_bn.legacy.load_model` and saves it as ``NEW.keras``;
channels-first convolutions run channels-last between ``Permute`` layers, so
the file runs on every backend. It prints what it rebuilt, what it converted
and what it assumed. The file is written under a temporary name in the same
folder and renamed: on any failure (SIGTERM and Ctrl-C included) nothing is
left, one line goes to stderr and the exit status is 1. An existing
NEW.keras is replaced only with ``--overwrite``, and never a file it reads.

``keras-bn convert IN.keras OUT.keras --batch-normalization keras|keras_bn``
takes a Keras 3 ``.keras`` file instead: it loads the model and swaps its
Batch Normalizations with `keras_bn.convert.model_to_keras` (``keras``: the
stock layer, so that OUT.keras loads without keras_bn) or
`keras_bn.convert.model_from_keras` (``keras_bn``, the default), prints what
it swapped and what it kept and why, and writes OUT.keras the same way.
"""

import argparse
import contextlib
import os
import re
import signal
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Sequence

import keras_bn

__all__ = ["main"]


def _inspect(path):
    """The report on one file, as lines of text."""
    from keras_bn import legacy
    from keras_bn.legacy import releases

    weights = legacy.read_weights(path)
    generation = releases.family(weights)
    lines = [
        f"file:          {weights.path}",
        f"format:        {legacy.FORMATS[weights.format]}"
        + (", whole model" if weights.whole_model else ""),
        f"Keras version: {weights.keras_version or 'not recorded'}",
        f"backend:       {weights.backend or 'not recorded'}",
        *_batch_norm_lines(weights, generation),
        *_kernel_lines(weights, generation),
        "",
    ]
    rows = [("layer", "array", "shape", "dtype")]
    for layer in weights.layers:
        if not layer.arrays:
            rows.append((layer.name, "(no weights)", "", ""))
        for index, (name, array) in enumerate(zip(layer.weight_names, layer.arrays)):
            rows.append(
                (
                    layer.name if index == 0 else "",
                    name,
                    str(array.shape),
                    str(array.dtype),
                )
            )
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        )
    return lines


def _batch_norm_lines(weights, generation):
    """What the file's BatchNormalization arrays mean: the release's reading
    of the fourth array, then each layer's epsilon and mode where the file
    has a model config, and the samplewise formula where a layer (or, with
    no config, possibly a layer) computed it."""
    from keras_bn.legacy import releases

    form, default = weights.batch_norm_form()
    samplewise = releases.samplewise_formula(generation)
    if form is None:
        return [
            "BatchNormalization fourth array: not told by the file: load with "
            'running_std="std" or "variance"',
            f"mode 1 (samplewise), where a layer used it: {samplewise}",
        ]
    lines = [f"BatchNormalization fourth array: {releases.FORM_MEANINGS[form]}"]
    names = [
        name
        for name, (class_name, _) in weights.layer_configs.items()
        if releases.is_batch_norm_class(class_name)
    ]
    sources = {
        name: releases.batch_norm_source(weights, name, ("auto", None, None))
        for name in names
    }
    if not sources:
        told = "" if weights.layer_configs else " (the file records no epsilon)"
        lines.append(
            f"BatchNormalization epsilon: the release's default {default:g}{told}"
        )
    for name, source in sources.items():
        epsilon = (
            f"epsilon {source.epsilon:g} from its config"
            if source.epsilon_origin == "config"
            else f"epsilon not recorded: the release's default {source.epsilon:g}"
        )
        meaning = (
            "" if source.form == form else f", {releases.FORM_MEANINGS[source.form]}"
        )
        mode = "" if source.mode is None else f", mode {source.mode}"
        lines.append(f"  {name}: {epsilon}{mode}{meaning}")
    if any(source.mode == 1 for source in sources.values()):
        lines.append(f"mode 1 (samplewise): {samplewise}")
    elif not weights.layer_configs and generation in (0, 1):
        lines.append(f"mode 1 (samplewise), where a layer used it: {samplewise}")
    return lines


def _kernel_lines(weights, generation):
    """Each convolution kernel of the file (every array of rank 3 or more),
    with what loading does to it: its layout and whether it is flipped."""
    kernels = [
        (layer.name, name)
        for layer in weights.layers
        for name, array in zip(layer.weight_names, layer.arrays)
        if array.ndim >= 3
    ]
    if not kernels:
        return ["convolution kernels: none"]
    lines = ["convolution kernels:"]
    for layer, name in kernels:
        config = weights.layer_configs.get(layer, ("", {}))[1]
        lines.append(
            f"  {layer} {name}: "
            + _kernel_layout(generation, config.get("dim_ordering"))
            + "; "
            + _kernel_flip(weights.backend, name)
        )
    return lines


def _kernel_layout(generation, dim_ordering):
    if generation is None or generation >= 2:
        return "Keras 3's layout, kept"
    if dim_ordering == "th":
        return "channels-first (dim_ordering 'th'), transposed to Keras 3's layout"
    if dim_ordering == "tf":
        return "channels-last (dim_ordering 'tf'), Keras 3's layout"
    return (
        "layout not recorded: channels-first or -last as the model's shapes "
        "tell (else pass --dim-ordering)"
    )


def _kernel_flip(backend, array_name):
    if backend is None:
        return "backend not recorded: flipped only with --backend theano"
    if backend != "theano":
        return f"not flipped ({backend} computed a cross-correlation, as Keras 3)"
    # A separable or depthwise layer's first kernel, named so by every
    # release that had them.
    if "depthwise" in array_name:
        return (
            "not flipped (Keras 2's Theano backend reversed depthwise kernels itself)"
        )
    return "flipped in its spatial axes (Theano computed a true convolution)"


def _same_file(first, second):
    second = os.path.abspath(second)
    if first == second:
        return True
    both = os.path.exists(first) and os.path.exists(second)
    return both and os.path.samefile(first, second)


def _is_keras_archive(path):
    """Whether ``path`` is meant as a Keras 3 ``.keras`` file: a zip archive,
    or a name ending in .keras that is not an HDF5 file (Keras 2 wrote
    whole models in HDF5 under any name)."""
    if zipfile.is_zipfile(path):
        return True
    if not str(path).lower().endswith(".keras"):
        return False
    try:
        with open(path, "rb") as file:
            return file.read(8) != b"\x89HDF\r\n\x1a\n"
    except OSError:
        return True


def _convert(
    old,
    new,
    weights,
    batch_normalization,
    backend=None,
    keras_version=None,
    channels_first=None,
    dim_ordering=None,
    overwrite=False,
):
    """Rebuilds ``old`` (or swaps the Batch Normalizations of a ``.keras``
    file), saves it as ``new``; the report as lines of text."""
    from keras_bn import legacy

    new = os.path.abspath(new)
    if any(_same_file(new, source) for source in (old, weights) if source):
        raise legacy.LegacyFileError(
            "the output is one of the files read: choose another name.", path=new
        )
    if os.path.exists(new) and not overwrite:
        raise legacy.LegacyFileError(
            "the output exists: pass --overwrite to replace it.", path=new
        )
    if not new.endswith(".keras"):
        raise legacy.LegacyFileError(
            f"expected an output name ending in .keras, got {new!r}.",
            path=new,
        )
    folder = os.path.dirname(new)
    if not os.path.isdir(folder):
        raise legacy.LegacyFileError("no such folder for the output.", path=folder)
    if _is_keras_archive(old):
        for option, value in (
            ("--weights", weights),
            ("--backend", backend),
            ("--keras-version", keras_version),
            ("--channels-first", channels_first),
            ("--dim-ordering", dim_ordering),
        ):
            if value is not None:
                raise legacy.LegacyFileError(
                    f"{option} is for old Keras files (HDF5, JSON, YAML); a "
                    ".keras file records all it needs.",
                    path=old,
                )
        model, lines = _swapped(old, batch_normalization)
        _save(model, new, folder)
        return [*lines, f"wrote:         {new}"]
    from keras_bn.legacy import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load_weights' land in assumptions
        rebuilt = models.rebuild(
            old, weights=weights, batch_normalization=batch_normalization,
            channels_first=channels_first or "transpose", backend=backend,
            keras_version=keras_version, dim_ordering=dim_ordering,
        )  # fmt: skip
        _save(rebuilt.model, new, folder)
    lines = [f"converted:     {old}" + (f" with weights {weights}" if weights else "")]
    lines += ["layers:"] + [f"  {line}" for line in rebuilt.layers]
    lines += ["conversions:"] + [f"  {line}" for line in rebuilt.conversions]
    lines += ["assumptions:"] + [f"  {line}" for line in rebuilt.assumptions]
    lines.append(f"wrote:         {new}")
    return lines


def _swapped(path, batch_normalization):
    """The model of the ``.keras`` file at ``path`` with its Batch
    Normalizations swapped to ``batch_normalization``'s, and the report as
    lines of text."""
    import keras

    from keras_bn import convert, legacy

    if not os.path.isfile(path):
        raise legacy.LegacyFileError("no such file.", path=path)
    if not zipfile.is_zipfile(path):
        raise legacy.LegacyFileError(
            "named .keras, but neither a Keras 3 archive (a zip file) nor an "
            "HDF5 file.",
            path=path,
        )
    try:
        # keras_bn is imported: its layers resolve by their registered name.
        model = keras.saving.load_model(path)
    except Exception as error:
        raise legacy.LegacyFileError(
            f"cannot load it as a Keras 3 model: {type(error).__name__}: {error}",
            path=path,
        ) from None
    if batch_normalization == "keras":
        swap = convert.model_to_keras
    else:
        swap = convert.model_from_keras
    try:
        copy, report = swap(model)
    except (TypeError, ValueError) as error:  # a subclassed model, say
        raise legacy.LegacyFileError(
            f"cannot swap its layers: {error}", path=path
        ) from None
    swapped = [f"  {name}: now {target}" for name, target in report.swapped.items()]
    kept = [f"  {name}: {why}" for name, why in report.kept.items()]
    lines = [f"converted:     {path} (a Keras 3 .keras file)"]
    lines += ["swapped:", *(swapped or ["  none"])]
    lines += ["kept:", *(kept or ["  none"])]
    if batch_normalization == "keras" and report.kept:
        lines.append("note:          the kept layers need keras_bn to load the file")
    if model.compiled:
        lines.append(
            "compiled:      again from its compile config; the optimizer's state "
            "is not carried"
        )
    return copy, lines


def _save(model, new, folder):
    """Saves ``model`` as ``new`` through a temporary file in ``folder``,
    renamed when complete: ``new`` is never left half written."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=".keras-bn-convert-", suffix=".keras", dir=folder
    )
    os.close(descriptor)
    try:
        with _removed_on_termination(temporary):
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)  # mkstemp's is 0600
            model.save(temporary)
            os.replace(temporary, new)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


class _Terminated(BaseException):
    """SIGTERM, raised where the command is (as SIGINT raises
    KeyboardInterrupt), so that the temporary file is removed."""


@contextlib.contextmanager
def _removed_on_termination(temporary):
    """SIGTERM stops the command as an exception (the caller removes the
    temporary file), then ends the process as SIGTERM would have."""

    def terminate(signum, frame):
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: signals stay as they are
        yield
        return
    try:
        yield
    except _Terminated:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGTERM) is terminate:
                signal.signal(signal.SIGTERM, previous)


# load_model's arguments, as keras-bn convert's options: its messages are
# told in the command's own terms.
_OPTIONS = {
    "backend": "--backend",
    "weights": "--weights",
    "keras_version": "--keras-version",
    "channels_first": "--channels-first",
    "dim_ordering": "--dim-ordering",
}
_ARGUMENT = re.compile(
    r"\b(" + "|".join(_OPTIONS) + r")=('[^']*'|\"[^\"]*\"|[^\s,;:)]*[^\s,;:).])?"
)


def _in_option_terms(message):
    """``pass backend='theano'`` as ``pass --backend theano``."""

    def option(match):
        value = (match.group(2) or "").strip("'\"")
        return _OPTIONS[match.group(1)] + (f" {value}" if value else "")

    return _ARGUMENT.sub(option, message)


def _error(message):
    from keras_bn.legacy.errors import plain_text

    message = " ".join(plain_text(message).split())
    if len(message) > 2000:
        message = message[:1997] + "..."
    print(f"keras-bn: error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: The arguments, without the program name; default
            ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 for a file it cannot read or
        convert.
    """
    parser = argparse.ArgumentParser(
        prog="keras-bn", description="Tools for keras_bn and legacy Keras files."
    )
    parser.add_argument(
        "--version", action="version", version=f"keras-bn {keras_bn.__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="show what a legacy Keras HDF5 weights file holds",
        description="Show the format, Keras version and layers of a Keras 0.x, "
        "1.x or 2.x HDF5 weights or whole-model file.",
    )
    inspect.add_argument("file", help="the HDF5 file")
    convert = commands.add_parser(
        "convert",
        help="rebuild an old Keras model as a Keras 3 .keras file, or swap the "
        "BatchNormalization layers of a .keras file",
        description="Rebuild a Keras 0.x, 1.x or 2.x model (a whole-model HDF5 "
        "file, or a to_json()/to_yaml() architecture with --weights) as a "
        "Keras 3 model and save it as a .keras file. Given a Keras 3 .keras "
        "file, swap its BatchNormalization layers for keras_bn's (or, with "
        "--batch-normalization keras, for the stock layer) and save the copy.",
    )
    convert.add_argument(
        "old",
        help="whole-model .h5, .json/.yaml architecture, or a Keras 3 .keras file",
    )
    convert.add_argument("new", help="the .keras file to write")
    convert.add_argument("--weights", help="the save_weights() HDF5 file")
    convert.add_argument(
        "--batch-normalization",
        choices=("keras_bn", "keras"),
        default="keras_bn",
        help="keras_bn.BatchNormalization (default) or the stock layer; for a "
        ".keras file, the layer its BatchNormalizations become",
    )
    convert.add_argument(
        "--backend",
        choices=("theano", "tensorflow"),
        help="the old backend, where the files do not record it (Keras 0.x "
        "models with convolutions)",
    )
    convert.add_argument(
        "--keras-version",
        help="the Keras release that wrote the files, where they do not record "
        "it (Keras 1.x weights files), e.g. 1.0.8",
    )
    convert.add_argument(
        "--channels-first",
        choices=("transpose", "native", "auto"),
        # None: not given (refused for a .keras file), "transpose" otherwise.
        default=None,
        help="channels-first layers: between two Permute layers (transpose, "
        "the default: the file runs on every backend), natively, or auto "
        "(transpose on TensorFlow only)",
    )
    convert.add_argument(
        "--overwrite",
        action="store_true",
        help="replace NEW.keras if it exists (never one of the files read)",
    )
    convert.add_argument(
        "--dim-ordering",
        choices=("th", "tf"),
        help="the image layout of Keras 1.x layers that do not record one "
        "(UpSampling, ZeroPadding, Cropping followed keras.json), where no "
        "other layer of the model tells it",
    )
    arguments = parser.parse_args(argv)
    source = arguments.file if arguments.command == "inspect" else arguments.old
    from keras_bn import legacy  # reading files needs no Keras

    try:
        if arguments.command == "inspect":
            lines = _inspect(arguments.file)
        else:
            lines = _convert(
                arguments.old, arguments.new, arguments.weights,
                arguments.batch_normalization, arguments.backend,
                arguments.keras_version, arguments.channels_first,
                arguments.dim_ordering, arguments.overwrite,
            )  # fmt: skip
    except ModuleNotFoundError as error:
        # Only convert imports Keras, and with it the backend.
        advice = keras_bn._backend_advice(error)
        if advice is None:
            return _error(f"{source}: {type(error).__name__}: {error}")
        return _error(advice)
    except legacy.LegacyFileError as error:
        if arguments.command == "convert":
            return _error(_in_option_terms(str(error)))
        return _error(str(error))
    except Exception as error:  # never a traceback: one line, exit 1
        return _error(f"{source}: {type(error).__name__}: {error}")
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:
        # The reader went away (keras-bn inspect F | head): what it read is
        # all it wanted. stdout is pointed at devnull so that Python's own
        # flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
