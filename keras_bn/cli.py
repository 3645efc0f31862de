"""The ``keras-bn`` command line.

``keras-bn inspect FILE`` (or ``python -m keras_bn.cli inspect FILE``) tells
what a legacy Keras HDF5 weights file holds: its format, the Keras version
and backend where known, what its BatchNormalization arrays mean (the
featurewise and samplewise formulas), the conversion its convolution kernels
get, and a table of its layers with their arrays' shapes. A file it cannot read gets a
one-line error (`keras_bn.legacy.LegacyFileError`'s message, never a
traceback) and exit status 1.
"""

import argparse
import sys

from keras_bn import legacy
from keras_bn.legacy import releases

__all__ = ["main"]

_FORMS = {
    "std": "standard deviation, (x - mean) / (running_std + epsilon)",
    "variance": "variance, (x - mean) / sqrt(variance + epsilon)",
    "theano_variance": "variance, (x - mean) / (sqrt(variance) + epsilon)",
}


def _inspect(path):
    """The report on one file, as lines of text."""
    weights = legacy.read_weights(path)
    form, epsilon = weights.batch_norm_form()
    lines = [
        f"file:          {weights.path}",
        f"format:        {legacy.FORMATS[weights.format]}"
        + (", whole model" if weights.whole_model else ""),
        f"Keras version: {weights.keras_version or 'not recorded'}",
        f"backend:       {weights.backend or 'not recorded'}",
        "BatchNormalization fourth array: "
        + (
            f"{_FORMS[form]}, default epsilon {epsilon:g}"
            if form
            else 'not told by the file: load with running_std="std" or "variance"'
        ),
    ]
    own = [
        name
        for name, (class_name, _) in weights.layer_configs.items()
        if releases.is_keras_bn_class(class_name)
    ]
    if own:
        lines.append(
            f"keras_bn layers {own}: standard deviation, (x - mean) / "
            "(running_std + epsilon), each with its config's epsilon"
        )
    generation = releases.family(weights)
    lines += [
        f"mode 1 (samplewise): {releases.samplewise_formula(generation)}",
        "convolution kernels: "
        + releases.kernel_conversion(generation, weights.backend),
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


def _error(message):
    message = " ".join(message.split())
    if len(message) > 2000:
        message = message[:1997] + "..."
    print(f"keras-bn: error: {message}", file=sys.stderr)
    return 1


def main(argv=None):
    """Runs the command line.

    Args:
        argv: The arguments, without the program name; default
            ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 for a file it cannot read.
    """
    parser = argparse.ArgumentParser(
        prog="keras-bn", description="Tools for keras_bn and legacy Keras files."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="show what a legacy Keras HDF5 weights file holds",
        description="Show the format, Keras version and layers of a Keras 0.x, "
        "1.x or 2.x HDF5 weights or whole-model file.",
    )
    inspect.add_argument("file", help="the HDF5 file")
    arguments = parser.parse_args(argv)
    try:
        lines = _inspect(arguments.file)
    except legacy.LegacyFileError as error:
        return _error(str(error))
    except Exception as error:  # never a traceback: one line, exit 1
        return _error(f"{arguments.file}: {type(error).__name__}: {error}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
