"""Helpers shared by the Slurm and Ray tests: README's recipes, local reference sweeps, resume checks."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
SMALL = [o for o in TINY if not o.startswith("threads=")]  # the launcher sets threads
# A run of many short epochs, each checkpointed, so that a requeue, a cancel or a killed worker sent
# once its first checkpoint exists lands inside training (~40 s on an idle core; at 60 epochs, ~4 s, a
# quiet machine finished the run before Slurm delivered the requeue).
LONG = [*SMALL, "task.train_size=256", "train.epochs=600"]
LONG_EPOCHS = 600


def recipe(engine: str) -> str:
    """The bash block that follows `<!-- recipe: ENGINE -->` in README.md."""
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- recipe: {engine} -->\s*```bash\n(.*?)```", text, re.S)
    assert found, f"README.md has no recipe for {engine}"
    return found.group(1)


def with_places(block: str, cluster: Path, sweep: Path) -> str:
    """The recipe with its first line (`cluster=... sweep=...`) pointing at test directories."""
    first, rest = block.split("\n", 1)
    assert first.startswith("cluster=") and " sweep=" in first, first
    return f"cluster={shlex.quote(str(cluster))} sweep={shlex.quote(str(sweep))}\n{rest}"


def recipe_sweep_overrides(block: str) -> list[str]:
    """The `actstudy sweep` line of a recipe, without its launcher keys and sweep directory: the same sweep
    run locally."""
    joined = block.replace("\\\n", " ")
    line = next(l for l in joined.splitlines() if l.strip().startswith("actstudy sweep"))
    words = shlex.split(line)[2:]
    words = [w for w in words if "$" not in w and not w.endswith(")")]  # shell substitutions: cluster places
    return [w for w in words if not w.lstrip("+").startswith(("hydra/launcher=", "hydra.launcher.", "hydra.sweep.dir="))]


def run_bash(script: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """bash -e with this Python's bin/ first on PATH (its actstudy, its ray)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PATH": path})


@contextmanager
def sweep_process(args: list[str]):
    """`actstudy sweep ARGS` in a child process, so that the test can act on the cluster meanwhile; the
    child is killed if the test leaves before it ended."""
    proc = subprocess.Popen([sys.executable, "-m", "actstudy", "sweep", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def finish(args: list[str], timeout: float) -> tuple[int, str]:
    """Run `actstudy sweep ARGS` to its end in a child process: (exit code, output)."""
    with sweep_process(args) as proc:
        output = proc.communicate(timeout=timeout)[0]
    return proc.returncode, output


def run_dirs(top: Path) -> list[Path]:
    return sorted(d for d in top.iterdir() if (d / "config.yaml").exists())  # run directories, not report/


def assert_same_metrics(a: Path, b: Path) -> None:
    """Two sweeps hold the same runs, with metrics.csv equal but for the wall-clock seconds."""
    assert [d.name for d in run_dirs(a)] == [d.name for d in run_dirs(b)]  # none lost, none twice
    for da, db in zip(run_dirs(a), run_dirs(b)):
        assert_same_run(da, db)


def assert_same_run(a: Path, b: Path) -> None:
    ma, mb = (pd.read_csv(d / "metrics.csv").drop(columns="seconds") for d in (a, b))
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    assert not (b / "checkpoint.pt").exists()


def assert_same_reports(a: Path, b: Path) -> None:
    """`actstudy report` tables of two sweeps agree in every column that is not a wall time."""
    ta, tb = (pd.read_csv(d / "summary.csv") for d in (a, b))
    timing = [c for c in ta.columns if "second" in c or "time" in c]
    pd.testing.assert_frame_equal(ta.drop(columns=timing), tb.drop(columns=timing), check_exact=True)


def epoch_log(run_dir: Path) -> tuple[list[int], list[int]]:
    """(epochs in the order actstudy.log reports them finished, epochs each resume started after)."""
    text = (run_dir / "actstudy.log").read_text()
    epochs = [int(m) for m in re.findall(r"\] - epoch (\d+)(?: \(update \d+\))?:", text)]
    resumes = [int(m) for m in re.findall(r"resumed from the checkpoint after epoch (\d+)", text)]
    return epochs, resumes


def assert_resumed_without_retraining(run_dir: Path, epochs: int) -> int:
    """Each attempt after the first started right after the last checkpointed epoch; returns the resumes.

    Epochs are logged just before their checkpoint is written, so a kill between the two can repeat the
    one epoch it interrupted; any earlier epoch trained twice fails this."""
    text = (run_dir / "actstudy.log").read_text()
    segments = re.split(r"resumed from the checkpoint after epoch (\d+)", text)
    attempts = [[int(m) for m in re.findall(r"\] - epoch (\d+)(?: \(update \d+\))?:", s)] for s in segments[0::2]]
    resumed_after = [int(e) for e in segments[1::2]]
    for before, after, point in zip(attempts, attempts[1:], resumed_after):
        assert after and after[0] == point + 1, (point, after[:3])
        assert before and point in (before[-1], before[-1] - 1), (before[-3:], point)
    assert sorted(set(sum(attempts, []))) == list(range(1, epochs + 1))
    return len(resumed_after)


def wait_for(condition, timeout: float, what: str, every: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
