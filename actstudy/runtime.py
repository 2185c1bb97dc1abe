"""Where and how a run executes: usable cores, torch threads, denormals, glibc's memory settings, device.

None of this changes what a run computes (except the device: CPU and GPU kernels give other numbers, so
`device` is part of a run's identity); all of it changes how fast, by factors of 2-80 on the machines
measured (docs/background.md §5).
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

DEVICES = ("auto", "cpu", "cuda")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a Slurm allocation), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def device_problem(name: str) -> Optional[str]:
    """Why `device=name` cannot run here (one line), or None."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        return "device=cuda but no CUDA device is available here; use device=cpu or device=auto"
    return None


def pick_device(name: str):
    """auto: cuda when available, else cpu. cuda where there is none is refused in one line."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    problem = device_problem(name)
    if problem:
        raise ValueError(problem)
    return torch.device(name)


def available_memory() -> Optional[int]:
    """Bytes of memory a new allocation can get here without swapping (Linux's MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of handing them back to the OS.

    By default it returns every large freed block at once, so each training step faults the pages of
    its big tensors in anew; on the VMs measured here that cost up to 10 ms per 26 MB tensor, more than
    the arithmetic on it. Blocks up to 32 MB (the most glibc allows) then come from the heap, and the
    heap is trimmed only past 2 GB free. True when the settings took; a no-op elsewhere (macOS, musl).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mmap_threshold, trim_threshold = -3, -1  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD in <malloc.h>
        return bool(libc.mallopt(mmap_threshold, 1 << 25) and libc.mallopt(trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def prepare_torch(threads: Optional[int], seed: int) -> int:
    """Fix threads, flush denormals, keep freed memory and seed torch; returns the thread count used."""
    import torch

    threads = threads or usable_cores()
    torch.set_num_threads(threads)
    # Gradients that vanish through time become subnormal floats, and x86 arithmetic on them is very slow.
    torch.set_flush_denormal(True)
    keep_freed_memory()
    torch.manual_seed(seed)
    return threads
