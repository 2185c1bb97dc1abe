"""The compiled sequence loop (recurrent.cpp): built on first use, once per machine, then loaded from cache.

torch's extension machinery (torch.utils.cpp_extension.load) compiles the C++ with the machine's
compiler and ninja (both must be on PATH) and caches the result under torch's extension directory
(TORCH_EXTENSIONS_DIR, by default ~/.cache/torch_extensions); it rebuilds only when the source or the
flags change. Where it cannot be built (no compiler, a failed build) or is turned off with
ACTSTUDY_NATIVE=0, `load()` returns None and the custom cells run the Python loop of actstudy/bptt.py
instead; either way the log says once which one runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from actstudy.activations import DEFAULT_NEGATIVE_SLOPE, Activation

log = logging.getLogger("actstudy")

SOURCE = Path(__file__).with_name("recurrent.cpp")
# The activation codes of recurrent.cpp's `Code` enum, in its order.
ACTIVATION_CODES = ("sigmoid", "hard_sigmoid", "tanh", "hardtanh", "relu", "leaky_relu", "elu", "selu", "gelu",
                    "silu", "softsign", "softplus", "identity")

_loaded: dict[str, Any] = {}  # "module": the extension or None, once tried; "reason": why None


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _build_options() -> tuple[str, list[str]]:
    """Extension name and compiler flags: the widest vector code torch's own kernels use on this CPU
    (AVX-512, AVX2 or portable code).

    Following torch's choice (torch.backends.cpu.get_cpu_capability(), which ATEN_CPU_CAPABILITY can lower)
    means the vector math our loop calls (torch's Vectorized types and their Sleef functions) exists in
    the width we compile for. AVX-512 over AVX2 made the custom LSTM's training step 6-12% faster on an
    Intel Xeon (benchmarks/cells.py): the gate activations and the backward rows are half the instructions.

    The name carries the instruction set, so that a cache shared between different machines never hands
    vector code to a CPU without it, and a digest of the source: ninja decides what to rebuild by file times
    alone, so a changed source whose time is not newer than the cached build (an upgrade that kept the
    packaged file times, an edit during a build) would otherwise load the old code.
    """
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    flags = ["-O3"]
    capability = _torch_capability()
    if capability == "AVX512" and {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= _cpu_flags():
        return f"actstudy_recurrent_avx512_{digest}", flags + [
            "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY=AVX512",
            "-DCPU_CAPABILITY_AVX512"]
    if capability in ("AVX512", "AVX2") and {"avx2", "fma"} <= _cpu_flags():
        return f"actstudy_recurrent_avx2_{digest}", flags + ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2",
                                                            "-DCPU_CAPABILITY_AVX2"]
    return f"actstudy_recurrent_base_{digest}", flags


def _torch_capability() -> str:
    """The vector instruction set torch's CPU kernels run with here ("AVX512", "AVX2", "DEFAULT", ...)."""
    try:
        import torch

        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # an older torch without it: AVX2 where the CPU has it, as before
        return "AVX2"


def _cached(name: str) -> bool:
    """Whether a build of `name` is already in torch's extension directory (a rebuild may still follow)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return any(Path(_get_build_directory(name, verbose=False)).glob("*.so"))
    except Exception:  # a private helper of torch's: if it moves, just say nothing
        return True


def load() -> Optional[Any]:
    """The compiled module, building it on first use; None where it cannot be had (logged once)."""
    if "module" in _loaded:
        return _loaded["module"]
    module, reason = None, None
    if os.environ.get("ACTSTUDY_NATIVE", "1") == "0":
        reason = "ACTSTUDY_NATIVE=0"
    elif shutil.which(os.environ.get("CXX", "c++")) is None:
        reason = "no C++ compiler on PATH"
    elif shutil.which("ninja") is None:
        reason = "no ninja on PATH (pip install ninja, or the system's ninja-build package)"
    else:
        try:
            from torch.utils.cpp_extension import load as build

            name, flags = _build_options()
            if not _cached(name):
                log.warning("custom cells: compiling the sequence loop (once per machine; a minute or more)")
            module = build(name=name, sources=[str(SOURCE)], extra_cflags=flags, verbose=False)
            if module.code_count() != len(ACTIVATION_CODES):
                module, reason = None, "its activation codes differ from actstudy/native/__init__.py's"
        except Exception as error:  # any failed build: the Python loop still computes the same thing
            lines = str(error).strip().splitlines()
            reason = f"the build failed: {lines[-1] if lines else type(error).__name__}"
    _loaded["module"], _loaded["reason"] = module, reason
    if module is None:
        log.warning("custom cells: the compiled sequence loop is unavailable (%s); using the Python loop", reason)
    else:
        log.info("custom cells: compiled sequence loop (%s)", Path(module.__file__).name)
    return module


def build_name() -> Optional[str]:
    """The loaded build's name (its instruction set and source digest, e.g. actstudy_recurrent_avx512_<digest>),
    or None when none is loaded: runs record it, since two builds round float32 differently."""
    module = _loaded.get("module")
    return module.__name__ if module is not None else None


def unavailable_reason() -> Optional[str]:
    """Why `load()` returned None, or None when it has not been tried or succeeded."""
    return _loaded.get("reason")


def slot_codes(*activations: Activation) -> Optional[tuple[list[int], list[float]]]:
    """(codes, negative slopes) for the compiled loop, or None when an activation has no code there."""
    codes, slopes = [], []
    for activation in activations:
        if activation.name not in ACTIVATION_CODES:
            return None
        codes.append(ACTIVATION_CODES.index(activation.name))
        # A bound leaky_relu carries its slope as the partial's keyword (Activation.bind).
        keywords = getattr(activation.fn, "keywords", None) or {}
        slopes.append(float(keywords.get("negative_slope", DEFAULT_NEGATIVE_SLOPE)))
    return codes, slopes
