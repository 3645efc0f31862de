"""The paper's Figure 1, drawn from `figure1.TrainingRecord`s.

Panel (a) is the test accuracy over training; then one panel per record with
percentiles, the 15th, 50th and 85th percentiles of the recorded sigmoid's
input over training. Used by ``scripts/demo.py`` and
``notebooks/02_internal_covariate_shift.ipynb``, from this folder as
`figure1` is.

matplotlib is an optional extra (in a clone of the repository,
``pip install -e ".[demo]"``): it is imported inside `plot_figure1`.
"""

from figure1 import PERCENTILES, TrainingRecord

__all__ = ["plot_figure1"]

PANEL_LETTERS = "bcdefghij"


def plot_figure1(records, path=None, target_accuracy=0.95, overlaid=()):
    """The paper's Figure 1 from `TrainingRecord`s.

    Panel (a): test accuracy against training steps (a log axis, since the
    networks reach the target accuracy orders of magnitude apart), one line
    per record, with the target accuracy as a dashed line. Then one panel per
    record that has percentiles: the 15th, 50th and 85th percentiles of the
    recorded sigmoid's input against training steps.

    Args:
        records: Dict from a label to a `TrainingRecord`.
        path: Optional file name to save the figure to (PNG by its suffix).
        target_accuracy: Where to draw the dashed line in panel (a).
        overlaid: Labels of records whose accuracy is expected to follow
            another's (a cross-check): in panel (a) they are drawn dashed, on
            top of the other curves, which are drawn wider, so that both of
            two coinciding curves show.

    Returns:
        The `matplotlib.figure.Figure` (made without pyplot, so it is not
        kept open by any figure manager).
    """
    if not isinstance(records, dict) or not records:
        raise ValueError(
            "records: expected a non-empty dict from a label to a "
            f"TrainingRecord, got {records!r}."
        )
    for label, record in records.items():
        if not isinstance(record, TrainingRecord):
            raise TypeError(
                f"records: the value for {label!r} must be a TrainingRecord, "
                f"got {type(record).__name__}."
            )
    if isinstance(overlaid, str) or not set(overlaid) <= set(records):
        raise ValueError(
            f"overlaid: expected labels of records, some of {list(records)}, "
            f"got {overlaid!r}."
        )
    from matplotlib.figure import Figure

    with_percentiles = {
        label: record
        for label, record in records.items()
        if record.percentiles is not None
    }
    panels = 1 + len(with_percentiles)
    figure = Figure(figsize=(4.2 * panels, 3.6), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    _plot_accuracy(axes[0], records, target_accuracy, overlaid)
    _plot_percentiles(axes[1:], with_percentiles)
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def _plot_accuracy(axes, records, target_accuracy, overlaid):
    """Panel (a): every record's test accuracy against training steps."""
    for label, record in records.items():
        if label in overlaid:
            style = dict(linestyle="--", zorder=3)
        else:
            # Wide enough to show on both sides of a dashed curve on top.
            style = dict(linewidth=2.5) if overlaid else {}
        # Step 0 has no place on a log axis.
        axes.plot(record.steps[1:], record.test_accuracy[1:], label=label, **style)
    axes.axhline(target_accuracy, color="gray", linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("training steps")
    axes.set_ylabel("test accuracy")
    axes.set_title("(a) test accuracy")
    # The middle of the panel stays clear: the curves start low on the left
    # and end high on the right.
    axes.legend(loc="center", fontsize="small")


def _plot_percentiles(panels, records):
    """Panels (b), (c), ...: one per record, its percentiles against steps."""
    for letter, axes, (label, record) in zip(PANEL_LETTERS, panels, records.items()):
        for column, percentile in enumerate(PERCENTILES):
            axes.plot(
                record.steps, record.percentiles[:, column], label=f"{percentile}th"
            )
        axes.set_xlabel("training steps")
        axes.set_ylabel("sigmoid input")
        axes.set_title(f"({letter}) {label}")
        axes.legend(loc="best", fontsize="small")
    # One vertical scale for the percentile panels, so that their spreads
    # compare at a glance.
    if len(panels):
        limits = [axes.get_ylim() for axes in panels]
        low = min(limit[0] for limit in limits)
        high = max(limit[1] for limit in limits)
        for axes in panels:
            axes.set_ylim(low, high)
