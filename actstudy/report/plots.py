"""TaskSections → plots (PNG and SVG), one file per kind and section.

A plot is one function and one row of `PLOTS`: its kind (the file name's prefix), the function that draws
it, the caption the HTML page prints under it, and which sections it applies to (and how many plots it draws
in each: the final plot draws one per metric). `write_plots` goes through the registry and nothing else, so
adding a plot is adding a function and a row.

matplotlib is imported inside the functions: the report's other parts, and its tests, do not pay for it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from actstudy.probe import SATURATION_STATS
from actstudy.report.compare import solve_times
from actstudy.report.grouping import ConfigGroup, TaskSection, file_safe, legend_label
from actstudy.stats import kaplan_meier, mean_std

PLOT_DPI = 150
# The band drawn around every mean curve; named in the plots' titles.
BAND_DESCRIPTION = "band = min–max over seeds"
Colours = dict[str, Any]  # configuration label → matplotlib colour, the same in every plot


def colour_map(sections: list[TaskSection]) -> Colours:
    """One colour per configuration label, the same in every plot of the report."""
    from matplotlib import colormaps

    labels = sorted({g.config_label for s in sections for g in s.groups})
    if len(labels) <= 10:
        palette = [colormaps["tab10"](i) for i in range(10)]
    elif len(labels) <= 20:
        palette = [colormaps["tab20"](i) for i in range(20)]
    else:  # beyond 20 no palette keeps colours apart; spread them over a wide colour map
        palette = [colormaps["turbo"](x) for x in np.linspace(0.03, 0.97, len(labels))]
    return {label: palette[i] for i, label in enumerate(labels)}


def _new_figure(width: float, height: float):
    # A bare Figure renders with Agg and leaves pyplot's global state (and backend) alone.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=PLOT_DPI)
    return figure, figure.add_subplot()


def _save(figure, path: Path) -> Path:
    # Light compression: encoding is a third of the time of a plot at level 6, for files barely smaller.
    figure.savefig(path, dpi=PLOT_DPI, bbox_inches="tight", pil_kwargs={"compress_level": 1})
    # The same figure as SVG, for papers: vector lines scale to any column width. Text stays text (not glyph
    # outlines): editable, smaller, and 12% faster to write over a report.
    from matplotlib import rc_context

    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(path.with_suffix(".svg"), bbox_inches="tight")
    return path


# Beyond this many configurations a section's colours are explained once, in legend_<task>.png, rather than
# beside every plot: a 50-entry legend repeated on each plot hides the plots and is most of the drawing time.
LEGEND_INLINE_MAX = 12
SHARED_LEGEND_NOTE = "colours: one per configuration,\nsee legend_{slug}"


def _shared_legend_handle(slug: str):
    from matplotlib.patches import Patch

    return Patch(facecolor="none", edgecolor="none", label=SHARED_LEGEND_NOTE.format(slug=slug))


def _legend(ax, handles: list, n_configs: int, slug: str = "") -> None:
    if n_configs > LEGEND_INLINE_MAX:
        handles = [_shared_legend_handle(slug)] + handles[n_configs:]
        n_configs = 0
    columns = max(1, math.ceil(n_configs / 25))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
              frameon=False, ncols=columns)


def plot_legend(section: TaskSection, colours: Colours, path: Path, variant: str = "") -> Path:
    """The section's colours, once, when there are too many configurations to repeat them beside every plot."""
    from matplotlib.figure import Figure

    columns = min(3, math.ceil(len(section.groups) / 20))
    rows = math.ceil(len(section.groups) / columns)
    figure = Figure(figsize=(4.6 * columns, 0.22 * rows + 0.6), dpi=PLOT_DPI)
    figure.legend(handles=_config_handles(section.groups, colours), loc="center", ncols=columns,
                  fontsize="small", frameon=False, title=f"{section.title}: one colour per configuration")
    return _save(figure, path)


def _config_handles(groups: list[ConfigGroup], colours: Colours) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=colours[g.config_label], lw=2, label=legend_label(g)) for g in groups]


def _band_handle():
    from matplotlib.patches import Patch

    return Patch(facecolor="grey", alpha=0.25, label=BAND_DESCRIPTION.replace("band = ", "band: "))


@dataclass
class Band:
    """One group's curve: the mean over its seeds at every x, and the min and max around it."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _bands(pieces: list[tuple[int, np.ndarray, np.ndarray]], geometric: bool = False) -> dict[int, Band]:
    """Aggregate (group index, x, y) pieces, one per run, into a Band per group, in one groupby.

    Runs of a group may stop at different epochs; each x is averaged over the runs that reached it.
    `geometric` averages log10(y) instead: on a log axis the arithmetic mean hugs the largest seed.
    """
    if not pieces:
        return {}
    y = np.concatenate([y for _, _, y in pieces])
    if geometric:
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero norm is −inf in log space
            y = np.log10(y)
    frame = pd.DataFrame({
        "group": np.concatenate([np.full(len(x), index) for index, x, _ in pieces]),
        "x": np.concatenate([x for _, x, _ in pieces]),
        "y": y,
    })
    stats = frame.groupby(["group", "x"], sort=True)["y"].agg(["mean", "min", "max"])
    group_of_row = stats.index.get_level_values(0).to_numpy()
    x_of_row = stats.index.get_level_values(1).to_numpy()
    columns = {name: stats[name].to_numpy() for name in ("mean", "min", "max")}
    starts = np.flatnonzero(np.r_[True, group_of_row[1:] != group_of_row[:-1]])
    ends = np.r_[starts[1:], len(group_of_row)]
    if geometric:
        columns = {name: 10.0 ** values for name, values in columns.items()}
    return {
        int(group_of_row[a]): Band(x_of_row[a:b], columns["mean"][a:b], columns["min"][a:b], columns["max"][a:b])
        for a, b in zip(starts, ends)
    }


def _time_axis(section: TaskSection) -> tuple[str, str]:
    """What per-evaluation curves are drawn against: ("epoch", label), or ("updates", label) where every run
    evaluated each train.eval_every updates (fresh data has no epochs, and an "epoch" there is one such
    period, so the axis counts optimizer updates)."""
    runs = [run for group in section.groups for run in group.completed]
    if runs and all(run.config.get("train.eval_every") and run.curves is not None and "updates" in run.curves
                    for run in runs):
        return "updates", "updates (optimizer steps)"
    return "epoch", "epoch"


def _on_axis(run, epochs, unit: str) -> np.ndarray:
    """Evaluation indices (metrics.csv's `epoch`; 0 = before training) as the x of `unit`."""
    epochs = np.asarray(epochs, dtype=float)
    if unit == "epoch":
        return epochs
    return np.interp(epochs, np.r_[0.0, run.curves["epoch"]], np.r_[0.0, run.curves["updates"]])


def _curve_bands(section: TaskSection, column: str) -> dict[int, Band]:
    unit = _time_axis(section)[0]
    pieces = [(index, _on_axis(run, run.curves["epoch"], unit), run.curves[column])
              for index, group in enumerate(section.groups) for run in group.completed]
    return _bands(pieces)


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_of_ten(value: float, _position=None) -> str:
    """A log axis's tick as plain text (10⁻³), since mathtext is off while plots are drawn."""
    if value <= 0 or not np.isfinite(value):
        return ""
    exponent = np.log10(value)
    if abs(exponent - round(exponent)) > 1e-9:
        return ""  # minor ticks stay unlabelled, as matplotlib's own log labels do by default
    return "10" + str(int(round(exponent))).translate(_SUPERSCRIPTS)


def _log_scale(ax) -> None:
    """A logarithmic y axis labelled in plain text: matplotlib's default log labels are mathtext, which the
    plots switch off so that `$`, `_` or `^` in a user's labels are drawn as written."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))

    def minor(value: float, _position=None) -> str:
        # Within about a decade a single power of ten is too few labels to read a value off: label 2·10ⁿ, 5·10ⁿ.
        low, high = ax.get_ylim()
        if low <= 0 or high / low > 30 or value <= 0:
            return ""
        exponent = int(np.floor(np.log10(value) + 1e-9))
        mantissa = value / 10.0**exponent
        if min(abs(mantissa - 2), abs(mantissa - 5)) > 1e-6:
            return ""
        return f"{mantissa:.0f}·" + _power_of_ten(10.0**exponent)

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))  # epochs and time steps are whole numbers


def _draw_bands(ax, bands: dict[int, Band], groups: list[ConfigGroup], colours: Colours,
                linestyle: str = "-", positive_only: bool = False) -> None:
    """Mean lines, plus every band as one polygon collection (one fill_between per band is slow)."""
    from matplotlib.collections import PolyCollection

    polygons, fill_colours = [], []
    for index, band in bands.items():
        colour = colours[groups[index].config_label]
        ax.plot(band.x, band.mean, color=colour, linestyle=linestyle, lw=1.6)
        keep = np.isfinite(band.low) & np.isfinite(band.high)
        if positive_only:  # a log axis cannot draw a polygon corner at zero
            keep &= (band.low > 0) & (band.high > 0)
        if keep.sum() < 2:
            continue
        x, low, high = band.x[keep], band.low[keep], band.high[keep]
        polygons.append(np.column_stack([np.r_[x, x[::-1]], np.r_[low, high[::-1]]]))
        fill_colours.append(colour)
    if polygons:
        ax.add_collection(PolyCollection(polygons, facecolors=fill_colours, alpha=0.18, linewidths=0),
                          autolim=True)
        ax.autoscale_view()


def _drawn_groups(section: TaskSection, *band_sets: dict[int, Band]) -> list[ConfigGroup]:
    indices = sorted(set().union(*(bands.keys() for bands in band_sets)))
    return [section.groups[i] for i in indices]


def plot_curves(section: TaskSection, colours: Colours, path: Path, variant: str = "") -> Path:
    from matplotlib.lines import Line2D

    train = _curve_bands(section, "train_loss")
    val = _curve_bands(section, "val_loss")
    baselines = [b[0] for b in section.baselines() if not math.isnan(b[0])]
    values = np.concatenate([np.asarray(baselines, dtype=float)] + [
        np.r_[band.low, band.high] for bands in (train, val) for band in bands.values()])
    values = values[np.isfinite(values)]
    # Losses that fall by orders of magnitude are unreadable on a linear axis.
    log_scale = bool(values.size) and values.min() > 0 and values.max() / values.min() > 30

    figure, ax = _new_figure(9, 5.5)
    if log_scale:
        _log_scale(ax)
    _draw_bands(ax, train, section.groups, colours, "--", positive_only=log_scale)
    _draw_bands(ax, val, section.groups, colours, "-", positive_only=log_scale)
    for loss in baselines:
        ax.axhline(loss, color="grey", lw=1.2, zorder=0)
    ax.set_xlabel(_time_axis(section)[1])
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("loss" + (" (log scale)" if log_scale else ""))
    ax.set_title(f"{section.title}: learning curves (mean over seeds, {BAND_DESCRIPTION})")
    ax.grid(alpha=0.3)
    drawn = _drawn_groups(section, train, val)
    handles = _config_handles(drawn, colours) + [
        Line2D([], [], color="black", ls="--", label="train loss"),
        Line2D([], [], color="black", ls="-", label="validation loss"),
        _band_handle(),
    ]
    if baselines:
        handles.append(Line2D([], [], color="grey", lw=1.2, label="baseline loss (memoryless)"))
    _legend(ax, handles, len(drawn), section.slug)
    return _save(figure, path)


def plot_gap(section: TaskSection, colours: Colours, path: Path, variant: str = "") -> Path:
    from matplotlib.lines import Line2D

    gaps = _curve_bands(section, "gap_loss")
    figure, ax = _new_figure(9, 5.5)
    _draw_bands(ax, gaps, section.groups, colours)
    ax.axhline(0.0, color="black", lw=0.8, zorder=0)
    ax.set_xlabel(_time_axis(section)[1])
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("generalization gap: validation loss − train loss")
    ax.set_title(f"{section.title}: generalization gap (above 0 = overfitting; mean over seeds, {BAND_DESCRIPTION})")
    ax.grid(alpha=0.3)
    drawn = _drawn_groups(section, gaps)
    handles = _config_handles(drawn, colours) + [_band_handle(), Line2D([], [], color="black", lw=0.8, label="no gap")]
    _legend(ax, handles, len(drawn), section.slug)
    return _save(figure, path)


def plot_grad_by_step(section: TaskSection, colours: Colours, path: Path, variant: str = "") -> Path:
    unit = _time_axis(section)[0]
    pieces, epochs = [], set()
    for index, group in enumerate(section.groups):
        for run in group.completed:
            if run.grad_norms is not None:
                pieces.append((index, run.grad_steps, run.grad_norms))
                epochs.add(int(_on_axis(run, [run.grad_epoch], unit)[0]))
    norms = _bands(pieces, geometric=True)
    figure, ax = _new_figure(9, 5.5)
    _log_scale(ax)
    _draw_bands(ax, norms, section.groups, colours, positive_only=True)
    ax.set_xlabel("time step t (1 = first input)")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("‖∂L/∂h_t‖ (log scale)")
    word = "update" if unit == "updates" else "epoch"
    when = f"{word} {epochs.pop()}" if len(epochs) == 1 else f"each run's last probed {word}"
    ax.set_title(f"{section.title}: gradient norm through time at {when}\n"
                 f"(geometric mean over seeds, {BAND_DESCRIPTION})")
    ax.grid(alpha=0.3, which="major")
    ax.grid(alpha=0.1, which="minor", axis="y")
    drawn = _drawn_groups(section, norms)
    _legend(ax, _config_handles(drawn, colours) + [_band_handle()], len(drawn), section.slug)
    return _save(figure, path)


def zoom_limits(values: list[float], floor: float | None = None) -> tuple[float | None, float | None]:
    """y limits that show every value with a margin of 8 % of their range (at least 0.005): 0.98 and 0.997
    stay apart instead of sharing a 0-1 axis. (None, None) when there is nothing to show. `floor`: no value
    can be below it (a mean − std of accuracies near 0 is drawn down to it, not into negative numbers)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    low, high = min(finite), max(finite)
    margin = max(0.08 * (high - low), 0.005, 0.01 * abs(high))
    low = low - margin if floor is None else max(low - margin, floor - 0.02 * (high - floor + margin))
    return low, high + margin


def plot_final(section: TaskSection, colours: Colours, path: Path, variant: str = "") -> Path:
    """The test metric named `variant` of every configuration that reports it: seeds, mean ± std, baseline."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    metric_name = variant
    groups = [g for g in section.groups if g.metric_name == metric_name]
    shown: list[float] = []  # every value drawn: seeds and mean ± std, for the zoom
    figure, ax = _new_figure(min(24.0, max(6.0, 0.6 * len(groups) + 3.0)), 5.5)
    below_axis = blended_transform_factory(ax.transData, ax.transAxes)
    for x, group in enumerate(groups):
        colour = colours[group.config_label]
        seeds = group.test_metrics()
        seeds = seeds[~np.isnan(seeds)]
        if seeds.size == 0:
            ax.text(x, 0.03, "no completed run", rotation=90, ha="center", va="bottom", transform=below_axis,
                    fontsize="small", color="dimgrey", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        mean, std = mean_std(seeds)
        shown.extend([*seeds, mean - std, mean + std])
        # Spread the seed dots a little sideways so that equal values stay visible.
        offsets = np.linspace(-0.15, 0.15, seeds.size) if seeds.size > 1 else np.zeros(1)
        ax.scatter(x + offsets, seeds, color=colour, s=14, alpha=0.6, zorder=2, edgecolors="none")
        ax.errorbar(x, mean, yerr=std if seeds.size > 1 else None, fmt="D", color=colour, markersize=7, capsize=5,
                    lw=1.6, zorder=3, markeredgecolor="black", markeredgewidth=0.6)  # one seed: no spread to draw
    seeds_drawn = [v for g in groups for v in g.test_metrics() if not math.isnan(v)]
    # a metric whose seeds are all >= 0 (accuracies, recall) is not drawn below 0; R² may be negative
    low, high = zoom_limits(shown, floor=0.0 if seeds_drawn and min(seeds_drawn) >= 0 else None)
    if low is not None:
        ax.set_ylim(low, high)
    baselines = [b[1] for g in groups for b in [g.baseline] if not math.isnan(b[1])]
    for value in sorted(set(baselines)):
        if low is None or low <= value <= high:
            ax.axhline(value, color="grey", ls="--", lw=1.2, zorder=0)
        else:  # off the zoomed scale: an arrow at the edge points to it, with its value
            below = value < low
            ax.annotate(f"baseline {value:.4g} {'below' if below else 'above'}", xy=(0.995, 0.0 if below else 1.0),
                        xycoords="axes fraction", xytext=(0.995, 0.1 if below else 0.9), textcoords="axes fraction",
                        ha="right", va="center", fontsize="small", color="dimgrey",
                        arrowprops={"arrowstyle": "->", "color": "grey", "lw": 1.2})
    published_lines = {}
    if section.task_name == "mnist1d" and metric_name == "accuracy":
        from actstudy.published import MNIST1D_REFERENCE_LINES as published_lines
    # other models' published test accuracy, as lines where the zoomed scale shows them
    published_lines = {k: v for k, v in published_lines.items() if low is None or low <= v <= high}
    for model_name, value in published_lines.items():
        ax.axhline(value, color="dimgrey", ls=":", lw=1.0, zorder=0)
        ax.text(1.0, value, f" {model_name} {value:.0%}", transform=blended_transform_factory(ax.transAxes, ax.transData),
                va="center", ha="left", fontsize="x-small", color="dimgrey")
    ax.set_xticks(range(len(groups)))
    # Two-line labels read well upright or slightly turned; steeply turned, one line reads better.
    tick_labels = [legend_label(g) if len(groups) > 12 else legend_label(g).replace(" (", "\n(") for g in groups]
    ax.set_xticklabels(tick_labels,
                       rotation=0 if len(groups) <= 3 else (30 if len(groups) <= 12 else 60),
                       ha="center" if len(groups) <= 3 else "right", rotation_mode="anchor",
                       fontsize="small")
    for tick, group in zip(ax.get_xticklabels(), groups):
        if group.best:
            tick.set_fontweight("bold")
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel("configuration (cell / gate,candidate,output activations)")
    ax.set_ylabel(f"test {metric_name} (at best validation epoch)")
    ax.set_title(f"{section.title}: final test {metric_name} (mean ± std over seeds, dots = seeds)")
    ax.grid(alpha=0.3, axis="y")
    handles = [
        Line2D([], [], color="black", marker="D", ls="-", label="mean ± std"),
        Line2D([], [], color="black", marker="o", ls="", alpha=0.6, markersize=4, label="one seed"),
    ]
    if baselines:
        handles.append(Line2D([], [], color="grey", ls="--", lw=1.2, label=f"baseline {metric_name} (memoryless)"))
    if published_lines:
        handles.append(Line2D([], [], color="dimgrey", ls=":", lw=1.0,
                              label="published test accuracy\n(Greydanus & Kobak 2024)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12 if published_lines else 1.01, 1.0),
              fontsize="small", frameon=False)
    return _save(figure, path)


HEATMAP_MAX_GROUPS = 12  # beyond this the panels become too small to read (and slow to draw); the rest are counted


def plot_grad_heatmap(section: TaskSection, colours: Colours, path: Path, variant: str = "") -> Path | None:
    """‖∂L/∂h_t‖ over epochs (or updates) × t, one panel per configuration, geometric mean over seeds, shared colour scale."""
    unit = _time_axis(section)[0]
    panels, hidden = [], 0
    for group in section.groups:
        tables = [r.grad_table for r in group.completed if r.grad_table is not None]
        if not tables:
            continue
        first = next(r for r in group.completed if r.grad_table is not None)  # labels the probed rows
        if len(panels) == HEATMAP_MAX_GROUPS:
            hidden += 1
            continue
        frame = pd.DataFrame({
            "epoch": np.concatenate([t["epoch"] for t in tables]),
            "t": np.concatenate([t["t"] for t in tables]),
            "g": np.concatenate([t["grad_norm"] for t in tables]),
        })
        with np.errstate(divide="ignore", invalid="ignore"):
            frame["g"] = np.log10(frame["g"].where(frame["g"] > 0))
        grid = frame.groupby(["epoch", "t"])["g"].mean().unstack("t")  # (epochs, T)
        panels.append((group, grid, first))
    if not panels:
        return None
    shown = panels
    values = np.concatenate([grid.to_numpy().ravel() for _, grid, _ in shown])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (-1.0, 0.0)
    columns = min(3, len(shown))
    rows = math.ceil(len(shown) / columns)
    from matplotlib.figure import Figure

    # Fixed spacing rather than a constrained layout: with a dozen panels the layout solver was half the time.
    figure = Figure(figsize=(4.2 * columns + 1.2, 3.0 * rows + 0.8), dpi=PLOT_DPI)
    axes = figure.subplots(rows, columns, squeeze=False)
    height = 3.0 * rows + 0.8
    figure.subplots_adjust(hspace=0.55, wspace=0.35, top=1 - 0.9 / height)  # room for the two title lines
    image = None
    for ax, (group, grid, first) in zip(axes.ravel(), shown):
        epochs, steps = grid.index.to_numpy(), grid.columns.to_numpy()
        # one row per probed epoch, evenly spaced: probes are not always equally far apart
        image = ax.imshow(grid.to_numpy(), aspect="auto", origin="lower", cmap="viridis", vmin=low, vmax=high,
                          extent=(steps.min() - 0.5, steps.max() + 0.5, -0.5, len(epochs) - 0.5),
                          interpolation="nearest")
        rows_at = _on_axis(first, epochs, unit)  # seeds of one configuration probe at the same evaluations
        ax.set_yticks(range(len(epochs)), [str(int(e)) for e in rows_at], fontsize="x-small")
        ax.set_title(legend_label(group), fontsize="small")
        ax.set_xlabel("time step t")
        ax.set_ylabel(("update" if unit == "updates" else "epoch") + " (probed)")
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    if image is not None:
        figure.colorbar(image, ax=axes, label="log10 ‖∂L/∂h_t‖ (geometric mean over seeds)", shrink=0.8)
    more = f"; {hidden} more configurations not shown" if hidden > 0 else ""
    over = "updates" if unit == "updates" else "epochs"
    figure.suptitle(f"{section.title}: gradient norm over {over} × time steps{more}", y=1 - 0.2 / height)
    return _save(figure, path)


# Saturation is per gate (actstudy/probe.py); its panel draws each gate in its own line style.
GATE_STYLES = (("i", "-"), ("r", "-"), ("f", "--"), ("z", "--"), ("o", ":"))
ACTIVATION_PANELS = (
    ("gate_saturated", "saturated gate outputs, bounded gates only\n(i/r solid, f/z dashed, o dotted)"),
    ("candidate_dead_fraction", "dead candidate units\n(fraction, 0 on the whole probe batch)"),
    ("mean_abs_state", "mean |c_t| (LSTM) or |h_t|\n(other cells), state units"),
)


def plot_activation_stats(section: TaskSection, colours: Colours, path: Path, variant: str = "") -> Path:
    """The probe's activation statistics over epochs (or updates), mean over seeds, one colour per configuration."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(14, 4.2), dpi=PLOT_DPI, layout="constrained")
    axes = figure.subplots(1, len(ACTIVATION_PANELS))
    unit, unit_label = _time_axis(section)
    drawn = []
    for ax, (stat, title) in zip(axes, ACTIVATION_PANELS):
        styles = [(SATURATION_STATS[g], style) for g, style in GATE_STYLES] if stat == "gate_saturated" else [(stat, "-")]
        for name, style in styles:
            pieces = []
            for index, group in enumerate(section.groups):
                for run in group.completed:
                    curve = run.activation_curves.get(name)
                    if name == "mean_abs_state":
                        curve = run.activation_curves.get("mean_abs_cell_state") or run.activation_curves.get(
                            "mean_abs_hidden_state")
                    if curve is not None:
                        pieces.append((index, _on_axis(run, curve[0], unit), curve[1]))
            bands = _bands(pieces)  # one groupby for every configuration at once
            positive = np.concatenate([b.high for b in bands.values()] + [np.empty(0)])
            positive = positive[np.isfinite(positive) & (positive > 0)]
            log_scale = name == "mean_abs_state" and positive.size and positive.max() / positive.min() > 100
            if log_scale:  # an exploding state (relu) would flatten every other curve on a linear axis
                _log_scale(ax)
            _draw_bands(ax, bands, section.groups, colours, style, positive_only=bool(log_scale))
            drawn += [g for g in _drawn_groups(section, bands) if g not in drawn]
        ax.set_title(title, fontsize="small")
        ax.set_xlabel(unit_label)
        _integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of units (0–1)")
    axes[2].set_ylabel("mean absolute value" + (" (log scale)" if axes[2].get_yscale() == "log" else ""))
    handles = _config_handles(drawn, colours) + [_band_handle()]
    if len(drawn) > LEGEND_INLINE_MAX:
        handles = [_shared_legend_handle(section.slug), _band_handle()]
    figure.legend(handles=handles, loc="outside lower center", fontsize="small", frameon=False,
                  ncols=min(4, len(handles)))
    figure.suptitle(f"{section.title}: activation statistics on the probe batch (mean over seeds, {BAND_DESCRIPTION})")
    return _save(figure, path)


def solved_curve(group: ConfigGroup) -> tuple[np.ndarray, np.ndarray] | None:
    """Fraction of the group's runs solved by each number of updates, 1 − Kaplan–Meier survival, as a step
    curve from (0, 0) to the largest budget; None when no run had a criterion."""
    data = solve_times(group)
    if data is None:
        return None
    times, solved = data
    at, survival = kaplan_meier(times, solved)
    budgets = [r.update_budget for r in group.runs if math.isfinite(r.update_budget)]
    end = max([times.max(), *budgets])  # observed up to the budget, even where a run stopped once solved
    x = np.r_[0.0, at, end]
    y = np.r_[0.0, 1.0 - survival, 1.0 - (survival[-1] if survival.size else 1.0)]
    return x, y


def plot_solved(section: TaskSection, colours: Colours, path: Path, variant: str = "") -> Path:
    figure, ax = _new_figure(9, 5.5)
    drawn = []
    for group in section.groups:
        curve = solved_curve(group)
        if curve is not None:
            ax.step(curve[0], curve[1], where="post", color=colours[group.config_label], lw=1.8)
            drawn.append(group)
    ax.set_xlabel("updates")
    ax.set_ylabel("fraction of runs solved")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{section.title}: runs solved against updates (Kaplan–Meier; unsolved runs censored at their "
                 "budget)", fontsize="medium")
    ax.grid(alpha=0.3)
    _legend(ax, _config_handles(drawn, colours), len(drawn), section.slug)
    return _save(figure, path)


# ----------------------------------------------------------------------------------------- the registry


def one_plot(section: TaskSection) -> list[str]:
    return [""]


def one_per_metric(section: TaskSection) -> list[str]:
    return section.metric_names


def many_configurations(section: TaskSection) -> list[str]:
    return [""] if len(section.groups) > LEGEND_INLINE_MAX else []


def with_solve_criterion(section: TaskSection) -> list[str]:
    return [""] if any(solve_times(g) is not None for g in section.groups) else []


def probed_gradients(section: TaskSection) -> list[str]:
    return [""] if any(r.grad_table is not None for g in section.groups for r in g.completed) else []


def probed_activations(section: TaskSection) -> list[str]:
    return [""] if any(r.activation_curves for g in section.groups for r in g.completed) else []


@dataclass(frozen=True)
class PlotKind:
    """One kind of plot: how it is drawn, what the page says under it, and where it applies."""

    draw: Callable[[TaskSection, Colours, Path, str], Path | None]  # (section, colours, png path, variant)
    caption: str
    # The plots of this kind a section gets: none (does not apply), [""] for one, or one variant each
    # (a metric's name for the final plot); with several, the variant joins the file name.
    variants: Callable[[TaskSection], list[str]] = one_plot


# In drawing order, which is the order of each section's plots in summary.md and index.html.
PLOTS: dict[str, PlotKind] = {
    "legend": PlotKind(plot_legend, "The colour of each configuration, the same in every plot of this section.",
                       many_configurations),
    "curves": PlotKind(plot_curves, "Learning curves: train (dashed) and validation (solid) loss per epoch "
                                    "(against updates where runs evaluate every train.eval_every updates); "
                                    "grey line: memoryless baseline."),
    "gap": PlotKind(plot_gap, "Generalization gap (validation − train loss) per epoch (or evaluation "
                              "period): rising above 0 is overfitting."),
    "grad_by_step": PlotKind(plot_grad_by_step, "‖∂L/∂h_t‖ against t at the last probed epoch (log scale): "
                                                "falling to the left is vanishing."),
    "grad_heatmap": PlotKind(plot_grad_heatmap, "log10 ‖∂L/∂h_t‖ over probed epochs × time steps, per "
                                                "configuration (white: the gradient underflowed to 0).",
                             probed_gradients),
    "activations": PlotKind(plot_activation_stats, "Activation statistics on the probe batch over training.",
                            probed_activations),
    "solved": PlotKind(plot_solved, "Fraction of runs solved against updates, one curve per configuration "
                                    "(Kaplan–Meier: a run not solved counts as unsolved up to its budget).",
                       with_solve_criterion),
    "final": PlotKind(plot_final, "Final test metric per configuration: seeds as dots, mean ± std (one seed: no "
                                  "bar), the axis zoomed to the data; baseline as a dashed line, or an arrow when "
                                  "off the scale; ★ and bold: the best configuration.", one_per_metric),
}


@dataclass(frozen=True)
class Plot:
    """A plot written: its kind (a key of PLOTS) and its PNG (an SVG of the same name lies beside it)."""

    kind: str
    path: Path

    @property
    def caption(self) -> str:
        return PLOTS[self.kind].caption


@dataclass(frozen=True)
class PlotJob:
    kind: str
    section_index: int
    variant: str
    path: Path


# What the plot workers read: set before the pool forks, so the runs are shared, not pickled.
_PLOT_INPUT: tuple[list[TaskSection], Colours] | None = None


def _draw_one(job: PlotJob) -> Path | None:
    import matplotlib

    sections, colours = _PLOT_INPUT
    # Labels come from configs and file names: `$`, `_`, `^`, `\` are drawn as written, never read as
    # mathtext (an unbalanced `$` would otherwise stop the whole report).
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        return PLOTS[job.kind].draw(sections[job.section_index], colours, job.path, job.variant)


def plot_workers(n_jobs: int) -> int:
    """Processes for drawing: matplotlib is single-threaded, and plots are most of a report's time."""
    import multiprocessing

    if n_jobs < 4 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4, n_jobs))


def plot_jobs(sections: list[TaskSection], out_dir: Path) -> list[PlotJob]:
    """Every plot of every section, as the registry says: `<kind>_<section slug>[_<variant>].png`."""
    jobs = []
    for index, section in enumerate(sections):
        for kind, plot in PLOTS.items():
            variants = plot.variants(section)
            for variant in variants:
                suffix = "" if len(variants) == 1 else f"_{file_safe(variant)}"
                jobs.append(PlotJob(kind, index, variant, out_dir / f"{kind}_{section.slug}{suffix}.png"))
    return jobs


def write_plots(sections: list[TaskSection], out_dir: Path) -> dict[str, list[Plot]]:
    """Every registered plot of every section, by section slug.

    Drawn in parallel processes where there are cores to spare; the result does not depend on it.
    """
    global _PLOT_INPUT
    jobs = plot_jobs(sections, out_dir)
    _PLOT_INPUT = (sections, colour_map(sections))
    try:
        workers = plot_workers(len(jobs))
        if workers == 1:
            results = [_draw_one(job) for job in jobs]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(_draw_one, jobs))
    finally:
        _PLOT_INPUT = None
    written: dict[str, list[Plot]] = {s.slug: [] for s in sections}
    for job, path in zip(jobs, results):
        if path is not None:  # a plot with nothing to show is not drawn
            written[sections[job.section_index].slug].append(Plot(job.kind, path))
    return written
