"""Batch Normalization's Figure-1 experiment on scikit-learn's digits.

Trains the paper's network (3 hidden layers of 100 sigmoids) with and without
`keras_bn.BatchNormalization`, prints the test accuracy at checkpoints and the
steps each network needs to reach 95%, and saves the Figure-1 plot as a PNG.
The experiment itself is `figure1` and `figure1_plot`, beside this script
(Python puts this script's folder on sys.path, so they import from any
working directory).

    python scripts/demo.py [--steps N] [--seed S] [--output FILE.png]

The backend is Keras' own choice: set KERAS_BACKEND to tensorflow (the
default), jax or torch. TensorFlow's native start-up log is left out of the
output (`native_log`, beside this script); errors from it are shown.

Runs from a clone of the repository (the scripts are not part of the
installed package) with scikit-learn and matplotlib: in the clone,
pip install -e ".[demo,tensorflow]" (".[notebooks,tensorflow]" for the
notebooks as well).
"""

import argparse
import os
import sys
import time

from native_log import quiet_native_log

TARGET_ACCURACY = 0.95
LABEL_WIDTH = 14
NOT_REACHED = "not reached"


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative int, got {text}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        # The first paragraph, and the last: what the demo needs.
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1],
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        # About 500 passes over the training set: enough for the network
        # without normalization to reach 95% too, in well under 2 minutes.
        default=10_500,
        help="training steps (batches of 60) per network (default: 10500)",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the initial weights and the sample order (default: 0)",
    )
    parser.add_argument(
        "--output",
        default="digits_figure1.png",
        help="where to save the Figure-1 plot (default: digits_figure1.png)",
    )
    return parser.parse_args(argv)


def table_rows(record):
    """Indices of the checkpoints to print: 0, 1, 2, 4, 8, ... and the last,
    so that the early steps, where the two networks differ most, show."""
    last = len(record.steps) - 1
    rows = [0]
    index = 1
    while index < last:
        rows.append(index)
        index *= 2
    return rows + [last] if last else rows


def print_table(records):
    labels = list(records)
    width = 2 + max(len(NOT_REACHED), *(len(label) for label in labels))
    print(f"{'step':>{LABEL_WIDTH}}" + "".join(f"{label:>{width}}" for label in labels))
    first = records[labels[0]]
    for row in table_rows(first):
        accuracies = (records[label].test_accuracy[row] for label in labels)
        print(
            f"{first.steps[row]:>{LABEL_WIDTH}}"
            + "".join(f"{accuracy:>{width}.1%}" for accuracy in accuracies)
        )
    reached = {
        label: records[label].steps_to_reach(TARGET_ACCURACY) for label in labels
    }
    print(
        f"{f'steps to {TARGET_ACCURACY:.0%}':>{LABEL_WIDTH}}"
        + "".join(
            f"{NOT_REACHED if steps is None else steps:>{width}}"
            for steps in reached.values()
        )
    )
    return reached


def main(argv=None):
    args = parse_args(argv)
    # Imported after parsing, so that --help answers without loading a backend.
    with quiet_native_log():
        import keras
        from figure1 import FIGURE1_NETWORKS, compare
        from figure1_plot import plot_figure1

    printed_tenths = {}

    def progress(label, step, total, accuracy):
        # One line per tenth of the training, per network.
        tenth = step * 10 // total
        if printed_tenths.get(label) != tenth:
            printed_tenths[label] = tenth
            print(
                f"  {label}: step {step:>6}/{total}, test accuracy {accuracy:.1%}",
                file=sys.stderr,
                flush=True,
            )

    print(
        f"Training on scikit-learn's digits with the {keras.backend.backend()} "
        f"backend, {args.steps} steps per network, seed {args.seed}.",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    records = compare(FIGURE1_NETWORKS, args.steps, seed=args.seed, progress=progress)
    print()
    print(f"Test accuracy (backend {keras.backend.backend()}, seed {args.seed}):")
    reached = print_table(records)
    without, with_bn = reached.values()
    if without is not None and with_bn is not None:
        print(
            f"With Batch Normalization, {TARGET_ACCURACY:.0%} after "
            f"{without / with_bn:.0f} times fewer steps."
        )
    else:
        print(
            f"Not both networks reached {TARGET_ACCURACY:.0%} within "
            f"{args.steps} steps: run more with --steps."
        )
    plot_figure1(records, args.output, target_accuracy=TARGET_ACCURACY)
    print(f"Figure 1 saved to {os.path.abspath(args.output)}")
    print(f"Total time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
