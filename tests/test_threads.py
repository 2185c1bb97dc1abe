"""The default thread count and OpenMP waiting (actstudy/runtime.py), through `actstudy run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import TINY

NO_THREADS = [o for o in TINY if not o.startswith("threads=")]


@pytest.mark.parametrize("omp_num_threads,expected", [(None, 1), ("2", 2), ("bogus", 1)])
def test_a_run_without_threads_takes_one_thread_or_what_the_scheduler_set(cli, tmp_path, monkeypatch, omp_num_threads,
                                                                        expected):
    if omp_num_threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp_num_threads)
    result = cli("run", *NO_THREADS, "-q", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["threads"] == expected


@pytest.mark.parametrize("preset,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_while_waiting_unless_the_user_says_otherwise(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    # Set by importing actstudy, before torch is loaded (OpenMP reads it once).
    code = "import actstudy, os, sys; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [expected, "False"]


@pytest.mark.skipif(__import__("actstudy.runtime", fromlist=["x"]).huge_pages_problem() is not None,
                    reason="needs Linux, glibc >= 2.35 and transparent huge pages")
@pytest.mark.parametrize("opt_out,expected", [(None, True), ("0", False)])
def test_the_run_command_restarts_itself_once_with_huge_pages_unless_told_not_to(tmp_path, opt_out, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "ACTSTUDY_RESTARTED")}
    if opt_out:
        env["ACTSTUDY_HUGE_PAGES"] = opt_out
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "actstudy", "run", *TINY, "threads=1", "-q", f"hydra.run.dir={run}"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "summary.json").read_text())["huge_pages"] is expected
    log = (run / "actstudy.log").read_text()
    assert ("memory: big blocks on huge pages" in log) is expected
    assert log.count("model: lstm") == 1  # one run, not one per start
