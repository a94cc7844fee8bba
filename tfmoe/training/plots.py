"""Labelled matplotlib PNGs: loss curves, the expert-load heatmap, and the comparison plots
of `experiments/compare.py` (loss curves per model and seed, loss against experts)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_labelled(plt, fig, ax, path, *, xlabel, ylabel, title, legend_size=None):
    """Axis labels, title, grid and legend on `ax`, then writes `fig` to `path`."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def loss_curves_png(
    path: str,
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str = "",
) -> str:
    """Writes line plots of `curves` (`{label: (xs, ys)}`) to `path`; returns `path`."""
    curves = {
        k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in curves.items() if len(x)
    }
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=label)
    return _save_labelled(plt, fig, ax, path, xlabel=xlabel, ylabel=ylabel, title=title)


def expert_load_heatmap_png(
    path: str, layer_names: Sequence[str], fractions: np.ndarray, *, title: str = ""
) -> str:
    """Writes a heatmap of `fractions` `[layers, experts]` (token share per expert) to `path`."""
    fractions = np.asarray(fractions, float)
    plt = _pyplot()
    layers, experts = fractions.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * experts, 1.2 + 0.45 * layers + 1), dpi=100)
    im = ax.imshow(fractions, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(experts))
    ax.set_yticks(range(layers))
    ax.set_yticklabels(layer_names, fontsize=7)
    ax.set_xlabel("expert")
    for i in range(layers):
        for j in range(experts):
            ax.text(j, i, f"{fractions[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    ax.set_title(title or "fraction of tokens per expert (uniform = 1/experts)", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


_COLOURS = (
    "tab:blue",
    "tab:red",
    "tab:green",
    "tab:orange",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:gray",
    "tab:olive",
    "tab:cyan",
)
_LINE_STYLES = ("-", "--", ":", "-.")


def grouped_curves_png(
    path: str,
    series: dict[str, Sequence[tuple[str, Sequence[float], Sequence[float]]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
) -> str:
    """Line plot of several runs per model: `{model: [(run label, xs, ys), ...]}`.

    One colour per model, one line style per run (e.g. per seed); the legend names both.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for colour, (model, runs) in zip(_COLOURS * 10, series.items()):
        for style, (label, xs, ys) in zip(_LINE_STYLES * 10, runs):
            ax.plot(
                xs, ys, color=colour, linestyle=style, linewidth=1.2, label=f"{model} ({label})"
            )
    return _save_labelled(
        plt, fig, ax, path, xlabel=xlabel, ylabel=ylabel, title=title, legend_size=7
    )


def experts_scaling_png(
    path: str,
    series: dict[str, dict[str, tuple[int, Sequence[float]]]],
    *,
    baseline: tuple[str, Sequence[float]],
    title: str = "",
) -> str:
    """Final loss against the number of experts (log2 axis), one marker per run.

    `series`: `{label (e.g. "top-1"): {model: (num_experts, [loss per seed])}}`, one line
    per label through the means over seeds; `baseline`: `(name, [loss per seed])`, drawn
    as a horizontal line at its mean.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ticks = set()
    for colour, (label, points) in zip(_COLOURS[1:] * 10, series.items()):
        experts = sorted(points.values(), key=lambda p: p[0])
        means = [float(np.mean(losses)) for _, losses in experts]
        ax.plot(
            [e for e, _ in experts],
            means,
            color=colour,
            marker="o",
            label=f"sparse, {label} (mean over seeds)",
        )
        for e, losses in experts:
            ax.scatter([e] * len(losses), losses, color=colour, alpha=0.4, s=12)
            ticks.add(e)
    name, losses = baseline
    ax.axhline(
        float(np.mean(losses)), color="tab:blue", linestyle="--", label=f"{name} (dense twin)"
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ticks))
    ax.set_xticklabels([str(e) for e in sorted(ticks)])
    return _save_labelled(
        plt,
        fig,
        ax,
        path,
        xlabel="experts per sparse layer",
        ylabel="final validation cross-entropy (nats)",
        title=title,
        legend_size=8,
    )
