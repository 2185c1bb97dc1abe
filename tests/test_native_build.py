"""Which vector code the compiled loop is built for: the width torch's own kernels run with here."""

import os
import subprocess
import sys

import pytest
import torch

NAME = "from actstudy import native; print(native._build_options()[0])"


def build_name(capability: str) -> str:
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    result = subprocess.run([sys.executable, "-c", NAME], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_build_follows_torchs_capability():
    """A user who lowers torch's instruction set (ATEN_CPU_CAPABILITY) gets our loop at that width too, and
    the widest one torch uses otherwise; the name keeps the builds apart in a shared cache."""
    assert build_name("default").startswith("actstudy_recurrent_base_")
    widest = torch.backends.cpu.get_cpu_capability()
    if widest not in ("AVX2", "AVX512"):
        pytest.skip(f"torch runs {widest} code here: no AVX2 build to check")
    assert build_name("avx2").startswith("actstudy_recurrent_avx2_")
    if widest == "AVX512":
        assert build_name("avx512").startswith("actstudy_recurrent_avx512_")
