"""Plots the chapters share: attention heat maps (chapter 2 onwards), every head of a model at once and
bertviz's interactive views with JavaScript the book ships, so they draw offline (chapter 15)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def plot_attention(
    weights: torch.Tensor,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    title: str | None = None,
    ax=None,
    annotate: bool = False,
):
    """Heat map of one attention matrix (T_q, T_k): row i shows where query i looks. Returns the axes."""
    w = weights.detach().to("cpu", torch.float32)
    if w.dim() != 2:
        raise ValueError(f"plot one (T_q, T_k) matrix at a time; got shape {tuple(w.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * w.shape[1] + 2, 0.5 * w.shape[0] + 1.5))
    image = ax.imshow(w.numpy(), cmap="viridis", vmin=0.0, vmax=max(1e-9, float(w.max())))
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    if query_labels is not None:
        ax.set_yticks(range(len(query_labels)), labels=list(query_labels))
    if key_labels is not None:
        ax.set_xticks(range(len(key_labels)), labels=list(key_labels), rotation=90)
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                value = float(w[i, j])
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if value > 0.6 * float(w.max()) else "white")
    ax.set_xlabel("key position (attended to)")
    ax.set_ylabel("query position (attending)")
    if title:
        ax.set_title(title)
    return ax


def plot_heads(
    maps: Sequence[torch.Tensor] | torch.Tensor,
    labels: Sequence[Sequence[str]] | None = None,
    tokens: Sequence[str] | None = None,
    title: str | None = None,
    size: float = 2.2,
):
    """A grid of heat maps, one per head: rows are layers, columns heads. Returns the figure.

    ``maps``: per layer a (H, T, T) tensor (or (1, H, T, T); a batch is averaged), or one (L, H, T, T) tensor.
    ``labels[layer][head]`` is printed in each panel's title (e.g. ``mt.classify_heads``); ``tokens`` label
    the axes when T is small enough to read (<= 24).
    """
    layers = [m.detach().to("cpu", torch.float32) for m in maps]
    layers = [m.mean(0) if m.dim() == 4 else m for m in layers]
    if not layers or any(m.dim() != 3 or m.shape[-1] != m.shape[-2] for m in layers):
        raise ValueError(f"expected per-layer (H, T, T) maps; got {[tuple(m.shape) for m in layers]}")
    n_layer, n_head = len(layers), layers[0].shape[0]
    fig, axes = plt.subplots(n_layer, n_head, figsize=(size * n_head, size * n_layer + 0.6), squeeze=False)
    for l, m in enumerate(layers):
        for h in range(n_head):
            ax = axes[l][h]
            ax.imshow(m[h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            name = f"L{l} H{h}" + (f": {labels[l][h]}" if labels is not None else "")
            ax.set_title(name, fontsize=9)
            if tokens is not None and len(tokens) <= 24:
                ax.set_xticks(range(len(tokens)), labels=list(tokens), fontsize=6)
                ax.set_yticks(range(len(tokens)), labels=list(tokens), fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            if h == 0:
                ax.set_ylabel("query")
            if l == n_layer - 1:
                ax.set_xlabel("key")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


BERTVIZ_CDN = {
    "require": "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js",
    "d3": "https://cdnjs.cloudflare.com/ajax/libs/d3/5.7.0/d3.min",
    "jquery": "https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.0/jquery.min",
}
"""The addresses bertviz 1.4.1 writes into its HTML; ``bertviz_html`` replaces each with a shipped copy."""

BERTVIZ_ASSETS = {"require": "require.js", "d3": "d3.min", "jquery": "jquery.min"}
"""The shipped copies in ``_vendor/bertviz/`` (require.js 2.3.8, d3 5.16.0, jQuery 2.2.4; see its README)."""


def visible_tokens(tokens: Sequence[str]) -> list[str]:
    """Characters made visible for a view's labels: a newline as "⏎", a space as "␣"."""
    return [t.replace("\n", "⏎").replace(" ", "␣") for t in tokens]


def bertviz_html(
    attention: Sequence[torch.Tensor],
    tokens: Sequence[str],
    view: str = "head",
    assets: str = "../bertviz",
    decimals: int = 3,
) -> str:
    """bertviz's ``head_view`` or ``model_view`` of per-layer weights [(1, H, T, T)] as one HTML string
    that loads require.js, d3 and jQuery from ``assets`` (a URL relative to the page) instead of a CDN.

    The book copies ``_vendor/`` to its root, so a page in ``chapters/`` finds them at ``../bertviz``.
    Weights are rounded to ``decimals`` places to keep the page small. A ``RuntimeError`` says so if
    bertviz's HTML no longer holds the addresses this function rewrites (a new bertviz version).
    """
    from bertviz import head_view, model_view

    if view not in ("head", "model"):
        raise ValueError(f"view must be 'head' or 'model'; got {view!r}")
    attention = list(attention)
    if not attention or any(a.dim() != 4 or a.shape[0] != 1 for a in attention):
        raise ValueError(f"expected one (1, H, T, T) tensor per layer; got {[tuple(a.shape) for a in attention]}")
    if any(a.shape[-1] != len(tokens) for a in attention):
        raise ValueError(f"{len(tokens)} tokens for weights of shape {tuple(attention[0].shape)}")
    # float64 so that the JSON holds 0.123, not float32's 0.12300000339746475
    rounded = [torch.round(a.detach().to("cpu", torch.float64), decimals=decimals) for a in attention]
    render = head_view if view == "head" else model_view
    html = render(rounded, list(tokens), html_action="return").data
    base = assets.rstrip("/")
    for name, cdn in BERTVIZ_CDN.items():
        if cdn not in html:
            raise RuntimeError(f"bertviz's {view} view no longer loads {cdn}: update mt.viz.BERTVIZ_CDN")
        html = html.replace(cdn, f"{base}/{BERTVIZ_ASSETS[name]}")
    code = re.sub(r"/\*.*?\*/", "", html, flags=re.S)  # bertviz's comments cite URLs; only code counts
    if re.search(r"https?://", code):
        raise RuntimeError("bertviz's HTML still loads something from the network")
    return html
