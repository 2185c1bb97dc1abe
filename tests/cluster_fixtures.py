"""Fixtures that start a real one-node Slurm or Ray cluster for the `cluster` tests, and stop it after.

The clusters are the scripts in tests/cluster/ (README's recipes use them the same way). Each fixture
checks on the way out that no daemon it started is still running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "cluster"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def session_pids(sid: int) -> list[int]:
    """Processes whose session id is `sid` (a cluster started with setsid)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after the command name: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


@dataclass
class Slurm:
    dir: Path
    env: dict

    def run(self, *args: str) -> str:
        return subprocess.run(list(args), env=self.env, check=True, capture_output=True, text=True).stdout

    def jobs(self) -> list[str]:
        """Ids of the jobs in the queue (array tasks as JOB_TASK)."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def wait_empty(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while self.jobs():
            assert time.time() < deadline, f"jobs still queued: {self.jobs()}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """munged, slurmctld and slurmd on loopback (tests/cluster/slurm.sh); the test process's environment
    points sbatch, squeue and sacct at them while the module's tests run."""
    if os.geteuid() != 0 and shutil.which("slurmd") is None:
        pytest.fail("the Slurm tests install slurm-wlm with apt-get and so need root")
    top = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(["bash", str(SCRIPTS / "slurm.sh"), "start", str(top)], capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    os.environ["SLURM_CONF"] = str(top / "slurm.conf")
    os.environ["PATH"] = f"{top / 'bin'}{os.pathsep}{os.environ['PATH']}"
    try:
        yield Slurm(top, dict(os.environ))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        pids = [int((top / name).read_text()) for name in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid")
                if (top / name).exists()]
        subprocess.run(["bash", str(SCRIPTS / "slurm.sh"), "stop", str(top)], check=True)
        assert not [pid for pid in pids if alive(pid)], "a Slurm daemon outlived the tests"


@dataclass
class Ray:
    dir: Path
    address: str
    sid: int

    def workers_running(self, task: str = "_run_job") -> list[int]:
        """Pids of the cluster's worker processes now running `task` (Ray renames them ray::<task>)."""
        found = []
        for pid in session_pids(self.sid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if cmdline.startswith(f"ray::{task}"):
                found.append(pid)
        return found


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """`ray start --head` with 2 CPUs on 127.0.0.1 (tests/cluster/ray.sh), stopped after the module."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install 'actstudy[ray]'")
    top = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = subprocess.run(["bash", str(SCRIPTS / "ray.sh"), "start", str(top), "2"], env=env,
                             capture_output=True, text=True)
    sid = int((top / "ray.pid").read_text()) if (top / "ray.pid").exists() else None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        saved = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # this process joins on 127.0.0.1 too
        try:
            yield Ray(top, (top / "address").read_text().strip(), sid)
        finally:
            if saved is None:
                os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
            else:
                os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved
            _disconnect_ray()
    finally:
        subprocess.run(["bash", str(SCRIPTS / "ray.sh"), "stop", str(top)], env=env, check=True)
        if sid is not None:
            assert not session_pids(sid), "a Ray process outlived the tests"


def _disconnect_ray() -> None:
    """The launcher leaves this process connected (ray.init) to the cluster; drop it before it stops."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
