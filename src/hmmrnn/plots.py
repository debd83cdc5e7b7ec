"""PDF figures comparing HMM and RNN samples, drawn from :class:`hmmrnn.testing.TestResults`.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot, so no GUI
backend or global figure state is involved (safe in cluster jobs and threads), and each file is
written atomically. Every function accepts a ``TestResults`` or a ``(json_path, parquet_path)``
pair as written by ``TestResults.save``, plus optional ``dpi`` and ``figsize``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hmmrnn._utils import atomic_path

__all__ = [
    "FILENAMES",
    "plot_euclidean_distances",
    "plot_fidelity",
    "plot_fidelity_table",
    "plot_frequencies",
    "plot_transition_matrices",
    "plot_volatilities",
    "save_all",
]

HMM_COLOR, RNN_COLOR, FLOOR_COLOR = "darkgreen", "darkred", "gray"


def _results(results: Any):
    from hmmrnn.testing import TestResults

    if isinstance(results, TestResults):
        return results
    if isinstance(results, (tuple, list)) and len(results) == 2:
        return TestResults.load(*results)
    raise ValueError(
        "results must be a TestResults or a (json_path, parquet_path) pair "
        f"(got {type(results).__name__})"
    )


def _figure(figsize: Sequence[float], **kw: Any) -> Figure:
    return Figure(figsize=tuple(figsize), layout="constrained", **kw)


def _save(fig: Figure, path: str | os.PathLike, dpi: float | None) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="pdf", dpi=dpi if dpi is not None else "figure")
    fig.clear()
    return path


def _mean_std_panel(ax, values: Sequence[np.ndarray], labels, colors, ylabel: str) -> None:
    x = np.arange(len(values)) * 0.5
    for xi, v, c in zip(x, values, colors, strict=True):
        m, s = float(np.mean(v)), float(np.std(v))
        ax.errorbar(xi, m, yerr=s, fmt="o", color=c, capsize=3)
        ax.annotate(
            f"{m:.2f}",
            (xi, m + s),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(x, labels)
    ax.set_xlim(x[0] - 0.35, x[-1] + 0.35)
    ax.set_ylabel(ylabel)


def plot_euclidean_distances(
    results: Any, path: str | os.PathLike, *, dpi: float | None = None, figsize=(4, 4)
) -> Path:
    """Mean +- std of matched-pair distances: HMM set B vs A (baseline) and RNN vs A."""
    r = _results(results)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    _mean_std_panel(
        ax,
        [r.distances_hmm, r.distances_rnn],
        ["HMM", "RNN"],
        [HMM_COLOR, RNN_COLOR],
        "distance to matched HMM sequence",
    )
    se = r.euclidean_gap_se
    noise = f" ± {se:.1%} s.e." if math.isfinite(se) else ""
    ax.set_title(
        f"Mean Euclidean distances\n(gap {r.euclidean_gap:+.1%}{noise})", fontweight="bold"
    )
    return _save(fig, path, dpi)


def plot_volatilities(
    results: Any, path: str | os.PathLike, *, dpi: float | None = None, figsize=(4, 4)
) -> Path:
    """Mean +- std of the number of output changes per sequence, HMM vs RNN."""
    r = _results(results)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    _mean_std_panel(
        ax,
        [r.volatilities_hmm, r.volatilities_rnn],
        ["HMM", "RNN"],
        [HMM_COLOR, RNN_COLOR],
        "# of changes in outputs",
    )
    ax.set_title("Observation volatilities", fontweight="bold")
    return _save(fig, path, dpi)


def plot_frequencies(
    results: Any, path: str | os.PathLike, *, dpi: float | None = None, figsize=(8, 5)
) -> Path:
    """Per-output mean +- std (over sequences) of output frequencies, HMM vs RNN."""
    r = _results(results)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    idx = np.arange(r.outputs)
    width = 0.4
    for shift, freqs, label, color in (
        (-width / 2, r.frequencies_hmm, "HMM", HMM_COLOR),
        (width / 2, r.frequencies_rnn, "RNN", RNN_COLOR),
    ):
        mean, std = freqs.mean(axis=0), freqs.std(axis=0)
        ax.errorbar(idx + shift, mean, yerr=std, fmt="o", label=label, color=color, capsize=3)
        for i in idx:
            ax.annotate(
                f"{mean[i]:.2f}",
                (i + shift, mean[i] + std[i]),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(idx, [f"Output {i + 1}" for i in idx])
    ax.set_ylabel("Frequency")
    ax.set_title("Output frequencies", fontweight="bold")
    ax.legend()
    return _save(fig, path, dpi)


def plot_transition_matrices(
    results: Any, path: str | os.PathLike, *, dpi: float | None = None, figsize=(10, 4.5)
) -> Path:
    """Annotated heatmaps of the HMM and RNN output transition matrices side by side."""
    r = _results(results)
    fig = _figure(figsize)
    axes = fig.subplots(1, 2)
    ticks = np.arange(r.outputs)
    image = None
    for ax, matrix, title in zip(
        axes, (r.transition_hmm, r.transition_rnn), ("HMM", "RNN"), strict=True
    ):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(title, fontweight="bold")
        ax.set_xticks(ticks, ticks + 1)
        ax.set_yticks(ticks, ticks + 1)
        ax.set_xlabel("next output")
        ax.set_ylabel("output")
        if r.outputs <= 12:  # annotations become unreadable beyond that
            for (i, j), v in np.ndenumerate(matrix):
                text = "n/a" if np.isnan(v) else f"{v:.2f}"
                color = "white" if np.isfinite(v) and v > 0.6 else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, ax=axes, shrink=0.9)
    max_sq = r.summary()["transition_sq_diff_max"]
    fig.suptitle(
        f"Transition matrices between outputs (max sq. diff {max_sq:.2g})", fontweight="bold"
    )
    return _save(fig, path, dpi)


def plot_fidelity(
    results: Any, path: str | os.PathLike, *, dpi: float | None = None, figsize=(11, 4.5)
) -> Path:
    """k-gram TV of the RNN against the HMM sampling floor, and dwell-time distributions."""
    r = _results(results)
    fig = _figure(figsize)
    ax_k, ax_run = fig.subplots(1, 2)

    ks = np.array(sorted(r.kgram_tv))
    ax_k.plot(ks, [r.kgram_tv[k]["rnn"] for k in ks], "o-", color=RNN_COLOR, label="RNN vs HMM")
    ax_k.plot(
        ks, [r.kgram_tv[k]["floor"] for k in ks], "s--", color=FLOOR_COLOR, label="HMM vs HMM"
    )
    ax_k.set_xticks(ks)
    ax_k.set_xlabel("k")
    ax_k.set_ylabel("total variation distance")
    ax_k.set_ylim(bottom=0)
    ax_k.set_title("k-gram distributions", fontweight="bold")
    ax_k.legend()

    colors = [f"C{o % 10}" for o in range(r.outputs)]
    lengths = np.arange(r.run_length_hist_hmm.shape[1])
    for o in range(r.outputs):
        for hist, style, src in (
            (r.run_length_hist_hmm[o], "-", "HMM"),
            (r.run_length_hist_rnn[o], "--", "RNN"),
        ):
            total = hist.sum()
            if total == 0:
                continue
            mask = hist > 0
            ax_run.plot(
                lengths[mask],
                hist[mask] / total,
                style,
                color=colors[o],
                label=f"{src} output {o + 1} (TV {r.run_length_tv_rnn[o]:.2f})"
                if src == "RNN"
                else f"{src} output {o + 1}",
            )
    ax_run.set_yscale("log")
    ax_run.set_xlabel("run length (steps)")
    ax_run.set_ylabel("fraction of runs")
    ax_run.set_title("Dwell times (runs cut by sequence ends included)", fontweight="bold")
    if ax_run.has_data():
        ax_run.legend(fontsize=7, ncol=2 if r.outputs > 3 else 1)
    return _save(fig, path, dpi)


def plot_fidelity_table(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    metrics: Sequence[str] | None = None,
    name_key: str = "experiment",
    dpi: float | None = None,
    figsize: Sequence[float] | None = None,
) -> Path:
    """Bar chart of fidelity numbers across experiments: one panel per metric.

    Parameters
    ----------
    rows : sequence of dict
        One dict per experiment: ``{name_key: "exp name", metric: value, ...}``, e.g. built from
        ``TestResults.summary()``. Missing or None values are left blank.
    path : path-like
        Output PDF.
    metrics : sequence of str, optional
        Metrics to plot, in order; default every numeric key in first-seen order.
    name_key : str
        Key holding the experiment name.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("plot_fidelity_table needs at least one row")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or name_key not in row:
            raise ValueError(f"row {i} must be a dict with key {name_key!r} (got {row!r})")
    if metrics is None:
        metrics = []
        for row in rows:
            for key, value in row.items():
                if key != name_key and key not in metrics and _is_number(value):
                    metrics.append(key)
    if not metrics:
        raise ValueError("plot_fidelity_table found no numeric metrics in rows")
    names = [str(row[name_key]) for row in rows]
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    if figsize is None:
        figsize = (4 * ncols, max(2.5, 0.35 * len(rows) + 1.2) * nrows)
    fig = _figure(figsize)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    y = np.arange(len(rows))
    for ax, metric in zip(axes, metrics, strict=False):
        values = np.array(
            [float(row[metric]) if _is_number(row.get(metric)) else np.nan for row in rows]
        )
        ax.barh(y, np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), color="steelblue")
        for yi, v in zip(y, values, strict=True):
            finite = bool(np.isfinite(v))
            ax.annotate(
                f"{v:.3g}" if finite else "n/a",
                (v if finite else 0.0, yi),
                xytext=(3 if not finite or v >= 0 else -3, 0),
                textcoords="offset points",
                ha="left" if not finite or v >= 0 else "right",
                va="center",
                fontsize=7,
            )
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
        ax.axvline(0, color="black", lw=0.5)
        ax.margins(x=0.2)  # room for the value labels at the bar ends
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle("Fidelity across experiments", fontweight="bold")
    return _save(fig, path, dpi)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


FILENAMES = {
    "euclidean_distances.pdf": plot_euclidean_distances,
    "observation_volatilities.pdf": plot_volatilities,
    "output_frequencies.pdf": plot_frequencies,
    "transition_matrices.pdf": plot_transition_matrices,
    "fidelity.pdf": plot_fidelity,
}


def save_all(results: Any, directory: str | os.PathLike, *, dpi: float | None = None) -> list[Path]:
    """Write every comparison figure (see ``FILENAMES``) into ``directory``."""
    r = _results(results)
    directory = Path(directory)
    return [func(r, directory / name, dpi=dpi) for name, func in FILENAMES.items()]
