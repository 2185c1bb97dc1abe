"""Run directories → summary tables, plots and a web page (`actstudy report`).

The report reads nothing but what training leaves in a run directory, through actstudy/rundir.py. It never
imports torch, so that reporting on a thousand runs takes seconds rather than waiting for a heavy import.
Each module does one stage, and this one runs them in order:

    loading   find_run_dirs → load_runs: one RunRecord per run directory
    grouping  group_runs → build_sections: a ConfigGroup per configuration, a TaskSection per task
    compare   select_groups (--select), comparison_frame, learning_frame: references, paired tests, effect
              sizes, power, learning speed, one adjusted family, the floor
    frames    summary_frame, statistics_frame, merge_frames → summary.csv
    plots     write_plots: every kind in the PLOTS registry → PNG and SVG
    text      write_markdown (summary.md), write_latex (summary.tex), print_tables (the console)
    html      write_html (index.html)

Runs that differ only in their seed (and in how they were executed: rundir.NOT_IDENTITY_KEYS) form one
group; the device is part of a configuration. Means and standard deviations are taken over the completed
runs of a group; diverged and failed runs are counted, their rates compared, and (with --diverged best) a
diverged run is scored at its best epoch before it diverged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape

from actstudy import rundir
from actstudy.report.compare import (
    CompareOptions,
    OptionError,
    comparison_frame,
    floor_sections,
    learning_frame,
    parse_reference,
    select_groups,
    selection_frame,
)
from actstudy.report.frames import merge_frames, statistics_frame, summary_frame
from actstudy.report.grouping import ConfigGroup, TaskSection, build_sections, group_runs
from actstudy.report.html import write_html
from actstudy.report.loading import REPORT_DIR_NAME, RunRecord, find_run_dirs, load_run, load_runs
from actstudy.report.plots import PLOTS, Plot, write_plots
from actstudy.report.text import print_tables, write_latex, write_markdown

__all__ = [
    "PLOTS", "CompareOptions", "ConfigGroup", "OptionError", "Plot", "ReportError", "ReportResult", "RunRecord",
    "TaskSection", "build_sections",
    "comparison_frame", "find_run_dirs", "group_runs", "load_run", "load_runs", "parse_reference", "print_tables",
    "statistics_frame", "summary_frame", "write_markdown", "write_plots", "write_report",
]


REPORT_MARKER = ".actstudy-report"  # marks a folder the report wrote, which the next report may replace whole


def _put_in_place(build: Path, out_dir: Path) -> None:
    """Move the finished report from `build` to `out_dir`. A folder that is absent, empty or an earlier
    report is swapped for it by two renames; a folder of the user's (`--out` holding other files) keeps
    its other files and gets each report file renamed into it."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / REPORT_MARKER).exists():
        for path in sorted(build.rglob("*")):
            target = out_dir / path.relative_to(build)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(path, target)
        shutil.rmtree(build, ignore_errors=True)
        return
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
    try:
        os.replace(build, out_dir)
    except OSError:
        if old is not None:
            os.replace(old / out_dir.name, out_dir)  # the previous report back where it was
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class ReportError(ValueError):
    """The report cannot be made at all; the message is one line for the user."""


@dataclass
class ReportResult:
    out_dir: Path
    files: list[Path]  # every file written, tables first
    summary: pd.DataFrame  # one row per configuration group (summary.csv)
    sections: list[TaskSection]
    skipped: list[tuple[Path, str]]  # unreadable run directories and why

    @property
    def groups(self) -> list[ConfigGroup]:
        return [g for s in self.sections for g in s.groups]


def write_report(dirs: list[Path], out: Path | None, console: Console, test: str = "welch",
                 options: CompareOptions | None = None) -> ReportResult:
    """Report every run directory below `dirs` into `out` (default: the first dir's `report/` folder).

    `options` say how configurations are compared (actstudy/report/compare.py); `test` is kept for callers
    that give only the test. Raises ReportError when a dir does not exist, an option names something the
    runs do not have, or no readable run is found; an unreadable run directory only costs a one-line warning.
    """
    dirs = [Path(d) for d in dirs]
    options = options or CompareOptions(test=test)
    try:
        options.check()
    except OptionError as err:
        raise ReportError(str(err)) from None
    if not dirs:
        raise ReportError("no directory given to report on")
    for directory in dirs:
        if not directory.exists():
            raise ReportError(f"{directory}: no such directory")
        if not directory.is_dir():
            raise ReportError(f"{directory}: not a directory (give a run or sweep directory)")
    run_dirs = find_run_dirs(dirs)
    where = ", ".join(str(d) for d in dirs)
    if not run_dirs:
        raise ReportError(f"no run directories ({rundir.SUMMARY}, or {rundir.CONFIG} with {rundir.METRICS}) "
                          f"below {where}")

    runs, skipped = load_runs(run_dirs)
    for path, why in skipped:
        # soft_wrap keeps each warning on one line however long the path is.
        console.print(f"[yellow]warning:[/yellow] skipping {escape(str(path))}: {escape(why)}", soft_wrap=True)
    if not runs:
        raise ReportError(f"none of the {len(run_dirs)} run directories below {where} could be read")

    sections = build_sections(group_runs(runs))
    # keys to tune per configuration: the command line's, and any a study file left in its runs' configs
    select = tuple(dict.fromkeys([*options.select, *(k for r in runs for k in (r.config.get("select") or []))]))
    options = replace(options, select=select)
    warnings: list[str] = []
    try:
        selected = pd.DataFrame(columns=["label"])
        if select:
            sections, selections = select_groups(sections, select)
            selected = selection_frame(selections)
            warnings = [f"{s.label}: the chosen {s.chosen} is at the edge of the grid ({s.grid}); the best value "
                        "may lie outside it" for s in selections if s.at_edge]
        comparisons = comparison_frame(sections, options)
    except OptionError as err:
        raise ReportError(str(err)) from None
    summary = merge_frames(summary_frame(sections), statistics_frame(sections), learning_frame(sections),
                           selected, comparisons)
    floors = floor_sections(summary, sections)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)

    out_dir = Path(out) if out is not None else dirs[0] / REPORT_DIR_NAME
    # Built whole in a hidden folder beside out_dir, then put in place: a failure half-way (a value that
    # cannot be drawn, a full disk) leaves the previous report as it was.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        csv_path = build / "summary.csv"
        summary.to_csv(csv_path, index=False)
        plots = write_plots(sections, build)
        md_path = build / "summary.md"
        write_markdown(md_path, summary, sections, plots, skipped, options, floors, warnings)
        tex_path = write_latex(build / "summary.tex", summary, sections, options)
        html_path = write_html(build / "index.html", summary, sections, plots, skipped, dirs, options, floors,
                               warnings)
        (build / REPORT_MARKER).write_text("written by actstudy report; this folder is replaced whole\n")
        plot_files = [plot.path for written in plots.values() for plot in written]
        built = [csv_path, md_path, tex_path, html_path] + plot_files + [p.with_suffix(".svg") for p in plot_files]
        _put_in_place(build, out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise

    print_tables(console, summary, sections)
    files = [out_dir / p.relative_to(build) for p in built]
    skipped_note = f", {len(skipped)} run directories skipped" if skipped else ""
    console.print(f"{len(runs)} runs in {len(summary)} configurations{skipped_note}; {len(files)} files written",
                  soft_wrap=True)
    return ReportResult(out_dir=out_dir, files=files, summary=summary, sections=sections, skipped=skipped)
