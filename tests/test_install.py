"""The configs ship inside a regular (non-editable) install, not only in the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_plain_install_finds_the_configs(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        check=True, timeout=600,
    )
    assert (target / "actstudy" / "conf" / "model" / "lstm.yaml").is_file()
    assert (target / "actstudy" / "native" / "recurrent.cpp").is_file()  # the compiled loop's source ships too
    code = (
        "from actstudy.config import compose; import actstudy, sys;"
        "cfg = compose(['model=gru', 'task=copy']);"
        "assert 'site' in actstudy.__file__, actstudy.__file__;"
        "from actstudy import native; import shutil;"
        "assert shutil.which('c++') is None or native.load() is not None, native.unavailable_reason();"
        "print(cfg.model.cell, cfg.task.name)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["gru", "copy"]
