"""Where and how a run executes: usable cores, torch threads, denormals, glibc's memory settings, device.

None of this changes what a run computes (except the device: CPU and GPU kernels give other numbers, so
`device` is part of a run's identity); all of it changes how fast, by factors of 2-80 on the machines
measured (docs/background.md §5).
"""

from __future__ import annotations

import ctypes
import gc
import os
from typing import Optional

DEVICES = ("auto", "cpu", "cuda")


# ------------------------------------------------------------------------------------ threads and waiting
# Threads and OpenMP waiting chosen for machines shared with other jobs.
#
# The cliff a run fell off beside busy cores (4 min 28 s instead of 13.7 s while another job kept both cores
# busy) came from OpenMP threads that spin while they wait: libgomp spins for a while before sleeping, and a
# recurrent step is a chain of small parallel regions whose threads meet at a barrier every few
# microseconds, so beside busy cores the spinning took the very CPU time the late thread needed
# (benchmarks/shared_cpu.py: 3x idle and 25x beside one busy core with spinning waits).
#
# Sleeping at once instead (OMP_WAIT_POLICY=PASSIVE) fixed that beside busy cores, but it is not safe on an
# idle machine either: waking a sleeping thread costs what the CPU and hypervisor make it cost. On a 2-core
# AMD EPYC VM 2 sleeping threads took 0.89x the 1-thread idle time (1.17x / 1.52x beside one / two busy
# cores); on a 2-core Intel Xeon VM the same setting took 3.4x idle, and a short spin (~0.1 ms) that made it
# 0.90x idle took 6.1x beside one busy core (README, "Shared machines"). One thread was within 1.07x of its
# idle time beside one busy core and 1.54-1.62x beside two on both, and gives up at most ~10% where 2
# threads win: a recurrent step at these sizes is too small to split well between cores. So a run takes one
# thread unless it says `threads=N`, or a batch scheduler sets OMP_NUM_THREADS; parallel launchers set it
# per job.
# A run that asks for several threads still gets sleeping waits: their worst case measured is 3.4x, the
# spinning waits' 25x.

# What quiet_waiting sets unless the user already has: libgomp's and Intel OpenMP's forms of "sleep, don't spin".
WAIT_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def quiet_waiting() -> None:
    """Make idle OpenMP threads sleep instead of spinning; a setting the user made wins.

    OpenMP reads these once, when torch loads it, so this must run before torch is imported
    (actstudy/__init__.py calls it); child processes such as sweep workers inherit them.
    """
    for key, value in WAIT_SETTINGS.items():
        os.environ.setdefault(key, value)


def default_threads() -> int:
    """torch threads for a run that does not set `threads`: OMP_NUM_THREADS when set, else 1 (see above)."""
    try:
        requested = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        requested = 0
    if requested >= 1:
        return requested
    return 1


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


def freeze_long_lived_objects() -> None:
    """Leave what exists before training out of Python's cycle collection (gc.freeze).

    A training step of the custom cells makes a few thousand short-lived Python objects (autograd nodes,
    tuples, saved tensors), so the collector runs every step or two, and every so often it walks all the
    objects the imports of torch, hydra and pandas left, which never become garbage. perf put the collector
    at ~9% of a compiled LSTM's training step (64 x 100, hidden 64, one thread); frozen, those objects are
    skipped. The caller undoes it with `thaw_long_lived_objects()` when the loop ends.
    """
    gc.collect()
    gc.freeze()


def thaw_long_lived_objects() -> None:
    """Undo `freeze_long_lived_objects`, so that whatever runs next in this process (a sweep worker's next run)
    starts with nothing frozen and its garbage can be collected."""
    gc.unfreeze()


# glibc's tunable that backs malloc's big blocks with transparent huge pages (glibc 2.35 and later).
HUGE_PAGES = "glibc.malloc.hugetlb=1"
RESTARTED = "ACTSTUDY_RESTARTED"  # set in the restarted process, so that it never restarts again


def huge_pages_problem() -> Optional[str]:
    """Why this process cannot get huge pages for its big tensors (one line), or None."""
    import platform
    import sys

    if not sys.platform.startswith("linux"):
        return "not Linux"
    libc, version = platform.libc_ver()
    try:
        new_enough = libc == "glibc" and tuple(int(part) for part in version.split(".")[:2]) >= (2, 35)
    except ValueError:
        new_enough = False
    if not new_enough:
        return f"needs glibc 2.35 or later, found {libc or 'another C library'} {version}".strip()
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
            if "[never]" in handle.read():
                return "transparent huge pages are off in this kernel"
    except OSError:
        return "this kernel has no transparent huge pages"
    return None


def restart_with_huge_pages() -> None:
    """Run this command again, at once, with malloc's big blocks on transparent huge pages.

    A training step's big tensors (above the 32 MB up to which glibc can keep freed blocks for reuse, e.g.
    the (T, B, 4H) gate tensors at T=400, batch 64, hidden 128) are mapped afresh every step, and the
    kernel faults them in one 4 KB page at a time: 37,000 faults per step there, a fifth of the step,
    so the time per time step grew 1.2x from T=100 to T=400. On 2 MB pages the faults fall to ~1,600.
    glibc reads the setting only when a process starts, hence the restart (same command, same process
    id); ACTSTUDY_HUGE_PAGES=0, a GLIBC_TUNABLES that already names it, or a machine without it
    (huge_pages_problem) leave the process as it is.
    """
    import sys

    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (os.environ.get(RESTARTED) or os.environ.get("ACTSTUDY_HUGE_PAGES") == "0"
            or "glibc.malloc.hugetlb" in tunables or huge_pages_problem()):
        return
    env = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES)
    env[RESTARTED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, list(sys.orig_argv), env)
    except OSError:
        return  # the command carries on as it is, on small pages


def huge_pages_in_use() -> bool:
    """Whether glibc in this process backs big blocks with huge pages (GLIBC_TUNABLES as it started)."""
    return HUGE_PAGES in os.environ.get("GLIBC_TUNABLES", "").split(":") and huge_pages_problem() is None


def prepare_torch(threads: Optional[int], seed: int) -> int:
    """Fix threads, flush denormals, keep freed memory and seed torch; returns the thread count used."""
    import torch

    threads = threads or default_threads()  # 1, or OMP_NUM_THREADS; idle threads sleep
    torch.set_num_threads(threads)
    # Gradients that vanish through time become subnormal floats, and x86 arithmetic on them is very slow.
    torch.set_flush_denormal(True)
    keep_freed_memory()
    torch.manual_seed(seed)
    return threads
