"""PNG plots of a training run: loss curves and the expert-load heatmap.

Uses matplotlib when it is importable (labelled figures). Without it, a plain
raster is written with `tf.io.encode_png` (no text: the heatmap has one row per
MoE layer, one column per expert, white = no tokens, mid grey = a uniform share,
black = twice that or more; the curve plot has
training loss in blue and validation loss in red), and a message says so.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_png(path: str, image: np.ndarray) -> None:
    import tensorflow as tf

    tf.io.write_file(path, tf.io.encode_png(tf.constant(image.astype(np.uint8))))


def loss_curves_png(
    path: str,
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str = "",
) -> str:
    """Writes line plots of `curves` (`{label: (xs, ys)}`) to `path`; returns `path`."""
    curves = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in curves.items() if len(x)}
    if have_matplotlib():
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for label, (xs, ys) in curves.items():
            ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path
    # Plain raster: white canvas, one colour per curve, shared axes.
    height, width, margin = 300, 450, 10
    image = np.full([height, width, 3], 255, np.uint8)
    image[margin:-margin, margin] = image[-margin, margin:-margin] = 0
    colours = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]
    finite = [(x, y) for x, y in curves.values() if np.isfinite(y).any()]
    if finite:
        x_all = np.concatenate([x for x, _ in finite])
        y_all = np.concatenate([y[np.isfinite(y)] for _, y in finite])
        x0, x1 = x_all.min(), max(x_all.max(), x_all.min() + 1e-9)
        y0, y1 = y_all.min(), max(y_all.max(), y_all.min() + 1e-9)
        for colour, (xs, ys) in zip(colours * 10, curves.values()):
            dense_x = np.linspace(xs.min(), xs.max(), 2000) if len(xs) > 1 else xs
            dense_y = np.interp(dense_x, xs, ys)
            cols = margin + 1 + ((dense_x - x0) / (x1 - x0) * (width - 2 * margin - 2)).astype(int)
            rows = height - margin - 1 - ((dense_y - y0) / (y1 - y0) * (height - 2 * margin - 2)).astype(int)
            ok = np.isfinite(dense_y)
            for dr in (0, 1):
                image[np.clip(rows[ok] + dr, 0, height - 1), cols[ok]] = colour
    _write_png(path, image)
    return path


def expert_load_heatmap_png(path: str, layer_names: Sequence[str], fractions: np.ndarray, *, title: str = "") -> str:
    """Writes a heatmap of `fractions` `[layers, experts]` (token share per expert) to `path`."""
    fractions = np.asarray(fractions, float)
    if have_matplotlib():
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
    scale = 24
    # White = no tokens, mid grey = uniform share (1/experts), black = twice that or more.
    load = fractions * fractions.shape[1]
    grey = (255 * (1.0 - np.clip(load / 2.0, 0.0, 1.0))).astype(np.uint8)
    image = np.repeat(np.repeat(grey, scale, axis=0), scale, axis=1)
    _write_png(path, np.stack([image] * 3, axis=-1))
    return path


_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown",
            "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
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
            ax.plot(xs, ys, color=colour, linestyle=style, linewidth=1.2, label=f"{model} ({label})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def experts_scaling_png(
    path: str,
    points: dict[str, tuple[int, Sequence[float]]],
    *,
    baseline: tuple[str, Sequence[float]],
    title: str = "",
) -> str:
    """Final loss against the number of experts (log2 axis), one marker per run.

    `points`: `{model: (num_experts, [loss per seed])}`; `baseline`: `(name, [loss per
    seed])`, drawn as a horizontal line at its mean.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    experts = sorted(points.values(), key=lambda p: p[0])
    means = [float(np.mean(losses)) for _, losses in experts]
    ax.plot([e for e, _ in experts], means, color="tab:red", marker="o", label="sparse, mean over seeds")
    for e, losses in experts:
        ax.scatter([e] * len(losses), losses, color="tab:red", alpha=0.4, s=12)
    name, losses = baseline
    ax.axhline(float(np.mean(losses)), color="tab:blue", linestyle="--", label=f"{name} (dense twin)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([e for e, _ in experts])
    ax.set_xticklabels([str(e) for e, _ in experts])
    ax.set_xlabel("experts per sparse layer")
    ax.set_ylabel("final validation cross-entropy (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
