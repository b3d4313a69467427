"""One look for every figure: the matplotlib style, a colour per method, saving, and "no data" notes.

Figures are drawn with the non-interactive Agg backend (chosen on import of :mod:`layerprune.figures`, before
pyplot is imported) so they render on headless cluster nodes. A method keeps its colour in every figure of an
experiment (and across experiments): colours come from the criterion registry (a record's own colour, else its
place in the registration order), then the rest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on cluster nodes; must precede the pyplot import
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from layerprune.criteria import criteria
from layerprune.io import atomic_path
from layerprune.summary import method_label

__all__ = [
    "BASELINE_COLOR",
    "FORMATS",
    "REMOVED_COLOR",
    "budget_linestyle",
    "figure_style",
    "method_color",
    "method_label",
    "method_marker",
    "method_offsets",
    "note",
    "save_figure",
]

logger = logging.getLogger(__name__)

#: File formats a figure can be written in.
FORMATS = ("png", "pdf", "svg")
BASELINE_COLOR = "black"
_PALETTE = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*")
#: Highlight of removed units: black, which no method colour is (the palettes are tab10 and Dark2).
REMOVED_COLOR = "black"

_RC = {
    "figure.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable in papers
}


@contextmanager
def figure_style() -> Iterator[None]:
    """Applies the package's rcParams for the figures drawn inside the block only."""
    with plt.rc_context(_RC):
        yield


def method_color(method: str, others: Iterable[str] = ()) -> tuple[float, ...] | str:
    """A stable colour for ``method``: the known methods first, unknown ones by sorted position after them."""
    if method == "baseline":
        return BASELINE_COLOR
    # a registered criterion's record may fix its own colour
    fixed = {c.name: c.color for c in criteria() if c.color is not None}
    if method in fixed:
        return fixed[method]
    return _PALETTE[_method_order(method, others).index(method) % len(_PALETTE)]


def _method_order(method: str, others: Iterable[str]) -> list[str]:
    """The registered criteria in registration order, then the others sorted, then ``method`` if still absent."""
    known = [c.name for c in criteria()]
    order = known + sorted(set(others) - set(known) - {"baseline"})
    if method not in order:
        order.append(method)
    return order


def method_marker(method: str, others: Iterable[str] = ()) -> str:
    """A stable marker per method (same order as :func:`method_color`), so methods with equal values stay
    distinguishable where their points coincide; the baseline is a star."""
    if method == "baseline":
        return "*"
    order = [m for m in _method_order(method, others) if m != "baseline"]
    return _MARKERS[order.index(method) % (len(_MARKERS) - 1)]  # the last marker, "*", is the baseline's


def method_offsets(methods: Sequence[str], span: float) -> dict[str, float]:
    """Small, symmetric horizontal offsets (``span`` wide in all) that set the methods' points side by side, so
    equal values are drawn next to each other instead of on top of each other."""
    n = len(methods)
    if n < 2:
        return dict.fromkeys(methods, 0.0)
    step = span / (n - 1)
    return {m: (i - (n - 1) / 2) * step for i, m in enumerate(methods)}


def budget_linestyle(budget: str, budgets: Sequence[str]) -> str:
    """A line style per budget, in the order of ``budgets``."""
    return _LINESTYLES[list(budgets).index(budget) % len(_LINESTYLES)] if budget in budgets else "-"


def note(ax: Axes, text: str) -> None:
    """Marks a panel whose input is missing (a stage disabled) instead of failing the whole figure."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9, color="0.35", transform=ax.transAxes)


def save_figure(fig: Figure, out_dir: str | Path, name: str, formats: Sequence[str], dpi: int) -> list[Path]:
    """Writes ``fig`` as ``out_dir/name.<fmt>`` for every format (atomically), closes it, returns the paths.

    Raises:
        ValueError: an unknown format or a non-positive dpi.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"figure formats {list(formats)} invalid; expected one or more of {list(FORMATS)}")
    if not isinstance(dpi, int) or dpi <= 0:
        raise ValueError(f"dpi={dpi!r} must be a positive int (e.g. 150)")
    paths = []
    try:
        with figure_style():  # rcParams such as pdf.fonttype are read at save time
            for fmt in dict.fromkeys(formats):
                path = Path(out_dir) / f"{name}.{fmt}"
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
                paths.append(path)
                logger.info("wrote %s", path)
    finally:
        plt.close(fig)
    return paths


def is_missing(value: object) -> bool:
    """True for None and NaN (pandas' NA included), the "not measured" values of a summary."""
    if value is None:
        return True
    try:
        return bool(math.isnan(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
