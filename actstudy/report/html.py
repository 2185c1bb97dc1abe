"""The report as one self-contained web page (index.html).

The page embeds every plot as base64 PNG and carries its own style, so it opens offline by double-click and
survives being mailed as one file. It shows the table rows of actstudy/report/text.py, each plot with the
caption its registry row gives (actstudy/report/plots.py), the published results that apply
(actstudy/published.py) and the exact commands and configs that made the runs.
"""

from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from actstudy import rundir
from actstudy.published import MNIST1D_REFERENCE_LINES, our_setting, published_for
from actstudy.report.compare import CompareOptions
from actstudy.report.grouping import ConfigGroup, TaskSection
from actstudy.report.plots import Plot
from actstudy.report.text import (
    COMPARISON_HEADERS,
    FLOOR_NOTE,
    SIGNIFICANT_MARK,
    TABLES,
    VS_REFERENCE,
    baseline_text,
    comparison_cells,
    compared_rows,
    fmt,
    fmt_mean_std,
    marks_note,
    nearest_published_line,
    pick_columns,
    section_rows,
    statistics_note,
    table_cells,
)

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5em auto; max-width: 1300px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } td.text { text-align: left; } td { white-space: nowrap; }
td.wrap { white-space: normal; min-width: 12em; }
.wide { overflow-x: auto; }
tr.sig td { background: #fff4d6; } tr.best td { font-weight: bold; } .note { color: #555; font-size: 0.9em; max-width: 1100px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.85em; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; font-size: 0.8em; white-space: pre-wrap; }
code { background: #f6f6f6; padding: 0 3px; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #888; margin-right: 4px;
          vertical-align: middle; }
"""
TEXT_HEADERS = {"model", "activations (gate,candidate,output)", "other", "metric", VS_REFERENCE}


def _e(text) -> str:
    return html.escape(str(text))


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'


def _summary_table(rows: pd.DataFrame, columns: tuple[str, ...]) -> str:
    headers, cells = pick_columns([table_cells(row) for _, row in rows.iterrows()], columns)
    out = ["<div class='wide'><table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
    for (_, row), row_cells in zip(rows.iterrows(), cells):
        classes = [c for c, on in (("sig", row.get("significant") is True), ("best", row.get("best") == True)) if on]  # noqa: E712
        css = f' class="{" ".join(classes)}"' if classes else ""
        tds = "".join(f'<td class="text">{_e(c)}</td>' if h in TEXT_HEADERS else f"<td>{_e(c)}</td>"
                      for h, c in zip(headers, row_cells))
        out.append(f"<tr{css}>{tds}</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _updates_of(runs, updates: set) -> Any:
    """The updates the runs took, for the published table: one number when all took the same, else their
    range and the budget (runs that stopped early: solved, or diverged), else None (not recorded)."""
    if len(updates) == 1:
        return next(iter(updates))
    if not updates:
        return None
    budgets = {r.update_budget for r in runs if math.isfinite(r.update_budget)}
    budget = f" of a budget of {int(max(budgets))}" if budgets else ""
    return f"{min(updates)}-{max(updates)}{budget}"


def _published_table(section: TaskSection, rows: pd.DataFrame) -> str:
    lines = []
    for group in section.groups:
        row = rows[rows["label"] == group.label]
        if row.empty:
            continue
        row = row.iloc[0]
        config = group.runs[0].config
        updates = {r.updates for r in group.runs if r.updates is not None}
        sequences = {r.train_sequences for r in group.runs if r.train_sequences is not None}
        measured = our_setting(config, _updates_of(group.runs, updates),
                               sequences.pop() if len(sequences) == 1 else None)
        for entry, differences in published_for(section.task_name, section.seq_len, group.cell,
                                                {**config, **measured}):
            ours = (f"test loss {fmt_mean_std(row['test_loss_mean'], row['test_loss_std'])} (baseline "
                    f"{fmt(row['baseline_loss'])}); test {row['metric']} "
                    f"{fmt_mean_std(row['test_metric_mean'], row['test_metric_std'])}, n={row['n_seeds']}")
            # only a setting known on both sides and equal is the same; anything else is listed
            setting = "same setting" if not differences else "not known to be the same: " + "; ".join(differences)
            lines.append(f'<tr><td class="text">{_e(group.config_label)}</td><td class="text wrap">{_e(ours)}</td>'
                         f'<td class="text wrap">{_e(entry.result)}</td><td class="text wrap">{_e(entry.source)}</td>'
                         f'<td class="text wrap">{_e(setting)}</td></tr>')
    if section.task_name == "mnist1d":
        others = ", ".join(f"{k} {v:.0%}" for k, v in MNIST1D_REFERENCE_LINES.items())
        lines.append(f'<tr><td class="text">other models</td><td class="text">—</td><td class="text wrap">'
                     f'{_e(others)}</td><td class="text wrap">Greydanus &amp; Kobak 2024</td>'
                     f'<td class="text wrap">test accuracy</td></tr>')
    if not lines:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("configuration", "ours", "published", "source", "setting"))
    return "<h3>Published results beside ours</h3>\n<table><tr>" + head + "</tr>\n" + "\n".join(lines) + "</table>"


def _sweep_commands(dirs: list[Path]) -> list[str]:
    """The sweeps' own command lines, from Hydra's multirun.yaml at the top of each sweep directory."""
    commands = []
    for top in dirs:
        for path in sorted(Path(top).glob(f"**/{rundir.MULTIRUN}"))[:50]:
            try:
                overrides = yaml.safe_load(path.read_text())["hydra"]["overrides"]["task"]
            except (OSError, yaml.YAMLError, KeyError, TypeError):
                continue
            commands.append(f"python -m actstudy sweep {' '.join(map(str, overrides))} "
                            f"hydra.sweep.dir={path.parent}")
    return commands


def _group_commands(group: ConfigGroup) -> str:
    first = group.runs[0]
    seeds = sorted({str(r.seed) for r in group.runs})
    if first.overrides is not None:
        words = [o for o in first.overrides if not o.startswith("seed=")]
        command = f"python -m actstudy run {' '.join(words)} seed=<{'|'.join(seeds)}>"
    else:
        command = f"(no {rundir.overrides_path(first.path)}; the config below is complete)"
    config_path = first.path / rundir.CONFIG
    config_text = config_path.read_text() if config_path.exists() else ""
    return (f"<details><summary>{_e(group.label)} — {len(group.runs)} runs</summary>"
            f"<pre>{_e(command)}</pre><pre>{_e(config_text)}</pre></details>")


def _comparison_table(rows: pd.DataFrame) -> str:
    compared = compared_rows(rows)
    if not len(compared):
        return ""
    out = ["<h3>Comparisons with the reference</h3><div class='wide'><table><tr>"
           + "".join(f"<th>{_e(h)}</th>" for h in COMPARISON_HEADERS) + "</tr>"]
    for _, row in compared.iterrows():
        css = ' class="sig"' if row.get("significant") is True else ""
        cells = comparison_cells(row)
        out.append(f"<tr{css}>" + "".join(f'<td class="text">{_e(c)}</td>' if i < 3 else f"<td>{_e(c)}</td>"
                                          for i, c in enumerate(cells)) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def write_html(path: Path, summary: pd.DataFrame, sections: list[TaskSection], plots: dict[str, list[Plot]],
               skipped: list[tuple[Path, str]], dirs: list[Path], options: CompareOptions,
               floors: dict[str, bool], warnings: list[str] = ()) -> Path:
    n_runs = sum(len(g.runs) for s in sections for g in s.groups)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>actstudy report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>actstudy report</h1>",
        f"<p class='note'>{n_runs} runs in {len(summary)} configurations, read from "
        f"{_e(', '.join(str(d) for d in dirs))}; written {time.strftime('%Y-%m-%d %H:%M %Z')}.</p>",
        "<p class='note'>Test metric and loss at each run's best validation epoch; mean ± sample std over the "
        "completed seeds (n). Diverged and failed runs are counted, not averaged. Rows shaded and marked "
        f"{SIGNIFICANT_MARK} differ significantly from their reference. {_e(statistics_note(options))}</p>",
        *[f"<p><b>Warning:</b> {_e(w)}</p>" for w in warnings],
    ]
    contents = "".join(f"<li><a href='#{_e(s.slug)}'>{_e(s.title)}</a></li>" for s in sections)
    parts.append(f"<ul>{contents}<li><a href='#commands'>commands and configs</a></li></ul>")
    for section in sections:
        rows = section_rows(summary, section)
        parts.append(f"<h2 id='{_e(section.slug)}'>{_e(section.title)}</h2>")
        parts.append(f"<p>Baseline (memoryless): {_e(baseline_text(section))}.</p>")
        if floors.get(section.slug):
            parts.append(f"<p><b>{_e(FLOOR_NOTE[0].upper() + FLOOR_NOTE[1:])}.</b></p>")
        for title, columns in TABLES:
            parts.append(f"<h3>{_e(title)}</h3>" + _summary_table(rows, columns))
        note = marks_note([table_cells(row) for _, row in rows.iterrows()])
        parts.append(f"<p class='note'>{_e(note)}</p>" if note else "")
        parts.append(_comparison_table(rows))
        parts.append(_published_table(section, rows))
        nearest = nearest_published_line(section)
        parts.append(f"<p class='note'>{_e(nearest)}</p>" if nearest else "")
        for plot in plots.get(section.slug, []):
            parts.append(f"<figure>{_image(plot.path)}<figcaption>{_e(plot.caption)} Files: {_e(plot.path.name)}, "
                         f"{_e(plot.path.with_suffix('.svg').name)}.</figcaption></figure>")
    parts.append("<h2 id='commands'>Commands and configs</h2>")
    sweeps = _sweep_commands(dirs)
    if sweeps:
        parts.append(f"<p>The sweeps, as started (from each sweep's {rundir.MULTIRUN}):</p>")
        parts.append("<pre>" + _e("\n".join(sweeps)) + "</pre>")
    parts.append(f"<p>Each configuration: the command of its runs (from {rundir.HYDRA_DIR}/{rundir.OVERRIDES}) and "
                 "the resolved config of its first run.</p>")
    parts += [_group_commands(g) for s in sections for g in s.groups]
    if skipped:
        parts.append("<h2>Skipped run directories</h2><ul>")
        parts += [f"<li><code>{_e(p)}</code>: {_e(why)}</li>" for p, why in skipped]
        parts.append("</ul>")
    parts.append("</body></html>")
    path.write_text("\n".join(p for p in parts if p))
    return path
