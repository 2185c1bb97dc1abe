"""Shared helpers: run the CLI in-process, with tiny experiments that finish in a second or two."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from actstudy.cli import app

# A run small enough for the default test suite: a few hundred short sequences, two epochs.
TINY = [
    "model.hidden_size=8",
    "task.seq_len=10",
    "task.train_size=64",
    "task.val_size=32",
    "task.test_size=32",
    "train.epochs=2",
    "train.batch_size=16",
    "train.probe_size=16",
    "threads=1",
]


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def read_csv_exact(path: Path) -> pd.DataFrame:
    """A run CSV with every number parsed exactly (pandas' fast float parser may be off in the last bit)."""
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    def number(v: str):
        return None if v == "" else int(v) if v.lstrip("-").isdigit() else float(v)  # "": not known

    return pd.DataFrame([[number(v) for v in row] for row in rows], columns=header)


def read_run(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    metrics = read_csv_exact(run_dir / "metrics.csv")
    grads = read_csv_exact(run_dir / "grad_by_step.csv")
    summary = json.loads((run_dir / "summary.json").read_text())
    return metrics, grads, summary
