"""Markdown tables and the JSON file of the benchmark scripts."""

import json

# The layers that measure the floor every Keras layer pays on eager PyTorch.
FLOOR = "identity layer"
FLOOR_ONE_OP = "x*gamma layer"
MET = {None: "", True: "yes", False: "**no**"}


def format_shape(shape):
    return "x".join(str(d) for d in shape)


def table(headers, rows, numeric_from=1):
    """A markdown table; columns from ``numeric_from`` on align right."""
    align = ["---"] * numeric_from + ["---:"] * (len(headers) - numeric_from)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def machine_line(machine, details):
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    allocator = " ".join(f"{k}={v}" for k, v in machine["malloc_env"].items())
    load = machine.get("load_average")
    load = "" if load is None else f"; load average {', '.join(map(str, load))}"
    if machine.get("torch_threads"):
        load += f"; torch threads {machine['torch_threads']}"
    return (
        f"Backend: {machine['backend']} ({versions}); "
        f"{machine['nproc']} x {machine['cpu']}; {details}; "
        f"{allocator or 'default glibc malloc settings'}{load}."
    )


def ratio_lines(rows, key_columns):
    """Ratio rows (see `harness.ratio_row`) with their target, "at most"."""
    out = []
    for row in rows:
        target = "" if row["target"] is None else f"{row['target']:g}"
        out.append(
            [row[k] for k in key_columns]
            + [
                f"{row['ratio']:.2f}",
                f"{row['ratio_of_minima']:.2f}",
                target,
                MET[row["met"]],
            ]
        )
    return out


# -- scripts/benchmark.py ----------------------------------------------------


def layer_markdown(report):
    first = report["results"][0]["train_ms"]
    candidates = [n for n in first if n != "one-pass"] + ["one-pass"]
    lines = [
        machine_line(
            report["machine"], f"keras_bn mode {report['mode']}, float32, axis=-1"
        ),
        "",
        "Median time per call, ms:",
        "",
    ]
    rows = []
    for result in report["results"]:
        for task, key in (("inference", "inference_ms"), ("train step", "train_ms")):
            rows.append(
                [format_shape(result["shape"]), task]
                + [
                    f"{result[key][n]:.3f}" if n in result[key] else ""
                    for n in candidates
                ]
            )
    lines += table(["shape", "task", *candidates], rows, numeric_from=2)
    lines += [
        "",
        "keras_bn's time over each reference's: the median of the ratios "
        "within a round, and the ratio of the fastest rounds (target: at most):",
        "",
    ]
    rows = []
    for result in report["results"]:
        shape = format_shape(result["shape"])
        rows += [
            [shape, *r] for r in ratio_lines(result["ratios"], ["task", "reference"])
        ]
    lines += table(
        ["shape", "task", "reference", "ratio", "ratio of minima", "target", "met"],
        rows,
        numeric_from=3,
    )
    lines += _peak_lines(report["results"], candidates)
    lines += _floor_lines(report["results"])
    if report.get("folding"):
        lines += ["", _folding_sentence(report["folding"])]
    return "\n".join(lines)


def _peak_lines(results, candidates):
    peaks = [r for r in results if r["train_peak_bytes"]]
    if not peaks:
        return []
    names = [n for n in candidates if n in peaks[0]["train_peak_bytes"]]
    rows = []
    for result in peaks:
        size = result["tensor_bytes"]
        rows.append(
            [format_shape(result["shape"]), f"{size / 2**20:.1f}"]
            + [
                f"{result['train_peak_bytes'][n] / size:.2f}"
                if n in result["train_peak_bytes"]
                else ""
                for n in names
            ]
        )
    return [
        "",
        "Peak memory of a training step, in units of the input tensor's size:",
        "",
        *table(["shape", "tensor MiB", *names], rows),
    ]


def _floor_lines(results):
    """Eager PyTorch: what a Keras layer costs before it does anything."""
    if FLOOR not in results[0]["train_ms"]:
        return []
    rows = []
    for result in results:
        for task, key in (("inference", "inference_ms"), ("train step", "train_ms")):
            ms = result[key]
            floor = ms[FLOOR]
            rows.append(
                [format_shape(result["shape"]), task]
                + [f"{ms[n]:.3f}" for n in (FLOOR, FLOOR_ONE_OP, "keras_bn")]
                + [f"{ms['keras_bn'] - floor:.3f}", f"{ms['keras'] - floor:.3f}"]
                + [f"{ms['torch']:.3f}" if "torch" in ms else ""]
            )
    return [
        "",
        "The floor on eager PyTorch: `keras.layers.Identity` (Layer.__call__ "
        "and nothing else; its train step is autograd.grad of its input) and a "
        "layer computing `x * gamma` (one keras.ops call, one weight), next to "
        "keras_bn; ms per call (medians), and what keras_bn and the stock layer "
        "take above the identity floor:",
        "",
        *table(
            [
                "shape",
                "task",
                FLOOR,
                FLOOR_ONE_OP,
                "keras_bn",
                "keras_bn - floor",
                "keras - floor",
                "torch.nn.BatchNorm",
            ],
            rows,
            numeric_from=2,
        ),
    ]


def _folding_sentence(fold):
    return (
        f"fold_batchnorm, {fold['model']}: inference {fold['original_ms']:.2f} ms "
        f"before, {fold['folded_ms']:.2f} ms after folding "
        f"({fold['speedup']:.2f} times faster); "
        f"{fold['batch_normalizations'] - len(fold['unfolded'])} of "
        f"{fold['batch_normalizations']} layers folded; largest difference "
        f"in the predictions {fold['max_abs_difference']:.1e}."
    )


def write_json(report, path):
    with open(path, "w") as out:
        json.dump(report, out, indent=2)


# -- scripts/benchmark_networks.py -------------------------------------------


def networks_markdown(results, train_target, fold_target):
    lines = [
        machine_line(results["machine"], "float32, channels-last"),
        "",
        "Median time per call, ms (train: `train_on_batch`; predict: "
        "`predict_on_batch`), and the peak memory of a forward and backward "
        "pass, MiB:",
        "",
    ]
    rows = []
    for r in results["results"]:
        peaks = r["train_peak_bytes"]
        rows.append(
            [
                r["network"],
                format_shape(r["input"]),
                f"{r['folded']} of {r['batch_normalizations']}",
            ]
            + [f"{r['train_ms'][n]:.1f}" for n in ("keras", "keras_bn")]
            + [
                f"{r['predict_ms'][n]:.1f}"
                for n in ("keras", "keras_bn", "keras_bn folded")
            ]
            + [_mib(peaks.get(n)) for n in ("keras", "keras_bn")]
        )
    lines += table(
        [
            "network",
            "input",
            "BNs folded",
            "train keras",
            "train keras_bn",
            "predict keras",
            "predict keras_bn",
            "predict folded",
            "peak keras",
            "peak keras_bn",
        ],
        rows,
        numeric_from=3,
    )
    lines += [
        "",
        "Targets (median of the within-round ratios; ratio of the "
        "fastest rounds in brackets):",
        "",
    ]
    rows = []
    for r in results["results"]:
        train = next(row for row in r["ratios"] if row["task"] == "train")
        predict = next(row for row in r["ratios"] if row["task"] == "predict")
        peaks = r["train_peak_bytes"]
        memory_met = None
        if None not in (peaks.get("keras"), peaks.get("keras_bn")):
            memory_met = peaks["keras_bn"] <= peaks["keras"]
        rows.append(
            [
                r["network"],
                f"{train['ratio']:.2f} ({train['ratio_of_minima']:.2f}) "
                + MET[train["met"]],
                _memory_cell(peaks, memory_met),
                f"{r['fold_speedup']:.2f} ({r['fold_speedup_of_minima']:.2f}) "
                + (MET[r["fold_met"]] if r["folded"] else "no layer folds"),
                f"{predict['ratio']:.2f}",
                f"{r['max_abs_difference']['keras_bn vs keras']:.1e}, "
                f"{r['max_abs_difference']['folded vs unfolded']:.1e}",
            ]
        )
    lines += table(
        [
            "network",
            f"train keras_bn / keras (<= {train_target:g})",
            "peak keras_bn / keras (<= 1)",
            f"predict unfolded / folded (>= {fold_target:g})",
            "predict keras_bn / keras",
            "largest difference in predictions: vs stock, folded vs unfolded",
        ],
        rows,
    )
    return "\n".join(lines)


def _mib(value):
    return "" if value is None else f"{value / 2**20:.1f}"


def _memory_cell(peaks, met):
    if met is None:
        return "not available"
    extra = (peaks["keras_bn"] - peaks["keras"]) / 2**20
    return f"{peaks['keras_bn'] / peaks['keras']:.3f} ({extra:+.1f} MiB) {MET[met]}"
