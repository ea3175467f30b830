"""Recall against QPS (or any two figures): one Pareto line per index, one PNG."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .results import AXES, Result, pareto_front, publish

_MARKERS = "os^Dv<>phX*P"


def _groups(results: Sequence[Result]) -> dict[str, list[Result]]:
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.build_label, []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: kv[0].lower()))


def _log_axis(name: str) -> bool:
    return name in ("qps", "build", "index-size", "bytes-per-vector")


def plot(results: Sequence[Result], output: str | os.PathLike, title: str,
         x_axis: str = "recall", y_axis: str = "qps", k: int | None = None) -> Path:
    """Draw each index's Pareto front of ``y_axis`` against ``x_axis`` into a PNG.

    Parameters
    ----------
    results : sequence of Result
        Points of one dataset and one k.
    output : path of the PNG to write
    title : str
    x_axis, y_axis : names in :data:`bench.results.AXES`
        QPS, build time and sizes use a log scale. leanvec's own indexes are drawn
        with solid lines, the peers dashed.
    k : int, optional
        Neighbours per query, written into the recall labels.

    Returns
    -------
    Path of the written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_label, _, x_higher = AXES[x_axis]
    y_label, _, y_higher = AXES[y_axis]
    if k is not None:
        x_label, y_label = (s.replace("@k", f"@{k}") for s in (x_label, y_label))
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    colors = plt.get_cmap("tab20").colors
    for i, (label, members) in enumerate(_groups(results).items()):
        points = [(r.metric(x_axis), r.metric(y_axis)) for r in members]
        front = pareto_front(points, x_higher, y_higher)
        ours = label.startswith("leanvec")
        ax.plot([p[0] for p in front], [p[1] for p in front],
                linestyle="-" if ours else "--", linewidth=2.2 if ours else 1.4,
                marker=_MARKERS[i % len(_MARKERS)], markersize=5,
                color=colors[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20], label=label)
    _style(ax, x_axis, y_axis, x_label, y_label, title)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=output.name, suffix=".png", dir=output.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        publish(tmp, output)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def _style(ax, x_axis: str, y_axis: str, x_label: str, y_label: str,
           title: str) -> None:
    if _log_axis(y_axis):
        ax.set_yscale("log")
    if _log_axis(x_axis):
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
