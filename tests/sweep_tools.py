"""Helpers for the sweep and resume tests: read the outcome table a sweep prints."""

from __future__ import annotations

import re


def outcome(output: str) -> dict[str, int]:
    """The counts of the table `actstudy sweep` prints at its end, e.g. {"completed": 2, "skipped": 4, ...}."""
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if "completed" in line and "skipped" in line)
    names = re.findall(r"[a-z]+", lines[header])
    values = [int(v) for v in re.findall(r"\d+", lines[header + 2])]
    return dict(zip(names, values))
