"""A PNG summary of a :class:`~feedbackkit.stacking.estimate.MultipoleEstimate`: the stacked image
and the multipole profiles C_0(r), C_m(r) and S_m(r) (m = 1 … m_max) with their region errors.

matplotlib is imported on first use and drawn through its Agg canvas (no pyplot, no change to
the caller's backend). The image is shown with row 0 at the bottom, so +y points up and angles θ
run counter-clockwise from +x, as in :func:`~feedbackkit.stacking.multipoles`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._errors import ArgumentError
from .estimate import MultipoleEstimate

__all__ = ["plot_estimate"]


def _errorbars(ax: Any, radii: np.ndarray, values: np.ndarray, errors: np.ndarray | None, label: str) -> None:
    ax.errorbar(radii, values, yerr=errors, marker="o", markersize=3, capsize=2, label=label)


def plot_estimate(
    path: str | os.PathLike[str],
    estimate: MultipoleEstimate,
    *,
    step_arcmin: float,
    map_index: int = 0,
    title: str | None = None,
) -> None:
    """Write a PNG of the stack of map `map_index` and its multipole profiles.

    Args:
        path: output file (PNG).
        estimate: from :func:`~feedbackkit.stacking.estimate.stack_multipoles`.
        step_arcmin: stack pixel size in arcminutes (axes and radii are shown in arcminutes).
        map_index: which of the B maps to show.
        title: figure title.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "plot_estimate: plotting needs matplotlib; install it with: pip install matplotlib"
        ) from error
    b = int(map_index)
    if not 0 <= b < estimate.stack.shape[0]:
        raise ArgumentError(
            f"plot_estimate: 'map_index' must be in [0, {estimate.stack.shape[0]}); got {map_index!r}"
        )
    n = (estimate.stack.shape[-1] - 1) // 2
    edge = (n + 0.5) * step_arcmin
    radii = estimate.radii * step_arcmin
    m_max = estimate.m_max

    figure = Figure(figsize=(4.6 * (2 + 2 * (m_max > 0)), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 + 2 * (m_max > 0))
    image = axes[0].imshow(estimate.stack[b], origin="lower", extent=(-edge, edge, -edge, edge), cmap="magma")
    figure.colorbar(image, ax=axes[0], shrink=0.85)
    axes[0].set(xlabel="x [arcmin]", ylabel="y [arcmin]", title="oriented stack")

    def err(errors: np.ndarray | None, m: int) -> np.ndarray | None:
        return None if errors is None else errors[b, m]

    _errorbars(axes[1], radii, estimate.C[b, 0], err(estimate.C_err, 0), "$C_0$")
    axes[1].set(xlabel="r [arcmin]", title="$C_0(r)$ (ring mean)")
    for m in range(1, m_max + 1):
        _errorbars(axes[2], radii, estimate.C[b, m], err(estimate.C_err, m), f"$C_{m}$")
        _errorbars(axes[3], radii, estimate.S[b, m], err(estimate.S_err, m), f"$S_{m}$")
    for ax, name in zip(axes[2:], ("C", "S")[: len(axes) - 2], strict=True):
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set(xlabel="r [arcmin]", title=f"${name}_m(r)$, m = 1 … {m_max}")
        ax.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=110)
