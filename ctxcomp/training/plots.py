"""Plots for training and calibration (matplotlib, imported on use).

Example:
    >>> plt = pyplot()  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.compressors.profile import PositionProfile
from ctxcomp.errors import CtxcompError, MissingDependencyError


class PlotDependencyError(MissingDependencyError):
    """matplotlib is needed for a plot and is not installed."""

    def __init__(self, purpose: str) -> None:
        self.module = "matplotlib"
        self.extra = ""
        CtxcompError.__init__(
            self,
            f"{purpose} needs matplotlib, which is not installed. Fix: pip install matplotlib (or omit it).",
        )


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend.

    Returns:
        The ``matplotlib.pyplot`` module.

    Raises:
        PlotDependencyError: matplotlib is not installed (the message names the fix).

    Example:
        >>> plt = pyplot()  # doctest: +SKIP
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotDependencyError("Plotting a position profile") from err
    return plt


def plot_profile(profile: PositionProfile, path: str | Path, *, title: str | None = None) -> Path:
    """Plot the per-slot attention curve with its 95% interval and the per-depth-group curves.

    Args:
        profile: The profile.
        path: Output image (``.png``).
        title: Plot title (default: the model id and sample size).

    Returns:
        The path written.

    Raises:
        PlotDependencyError: matplotlib is not installed.

    Example:
        >>> plot_profile(prof, "profile.png")  # doctest: +SKIP
    """
    plt = pyplot()
    x = np.arange(1, profile.k + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.fill_between(x, profile.ci_low, profile.ci_high, alpha=0.25, label="95% interval")
    ax.plot(x, profile.means, marker="o", lw=2, label="all layers")
    for g, vals in profile.layer_groups.items():
        ax.plot(x, vals, lw=1, ls="--", label=f"{g} layers")
    ax.axhline(1.0 / profile.k, color="grey", lw=0.8, ls=":", label="uniform")
    ax.set_xlabel("document slot (1 = first)")
    ax.set_ylabel("share of context attention (answer position)")
    ax.set_title(title or f"{profile.model_id}: positional attention, n={profile.n} prompts")
    ax.set_xticks(x)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


__all__ = ["PlotDependencyError", "plot_profile", "pyplot"]
