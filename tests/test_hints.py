"""Typos and lists: the one-line error names the nearest valid key, and a list is not a sweep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def actstudy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actstudy", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("override, hint", [
    ("epochs=5", "did you mean train.epochs?"),
    ("model.hiden_size=8", "did you mean model.hidden_size?"),
    ("train.epoch=3", "did you mean train.epochs?"),
    ("lr=0.1", "did you mean optim.lr?"),
    ("task.seqlen=5", "did you mean task.seq_len?"),
])
def test_an_unknown_key_names_the_nearest_valid_one(override, hint, tmp_path):
    result = actstudy("run", override, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and hint in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "outputs").exists()


def test_a_key_with_no_near_name_gets_no_guess(tmp_path):
    result = actstudy("run", "zzzqqq=1", cwd=tmp_path)
    assert result.returncode == 2 and "did you mean" not in result.stderr


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_list_where_a_group_option_goes_is_refused_with_the_sweep_syntax(command, tmp_path):
    result = actstudy(command, "model=[lstm,gru]", cwd=tmp_path)
    assert result.returncode == 2
    assert "use model=lstm,gru to sweep" in result.stderr and result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "outputs").exists()


def test_a_list_for_a_single_value_key_is_refused_too(tmp_path):
    result = actstudy("sweep", "seed=[0,1]", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and "use seed=0,1 to sweep" in result.stderr
