"""Threads and OpenMP waiting chosen for machines shared with other jobs.

The cliff a run fell off beside busy cores (4 min 28 s instead of 13.7 s while another job kept both cores
busy) came from OpenMP threads that spin while they wait: libgomp spins for a while before sleeping, and a
recurrent step is a chain of small parallel regions whose threads meet at a barrier every few
microseconds, so beside busy cores the spinning took the very CPU time the late thread needed
(benchmarks/shared_cpu.py: 3x idle and 25x beside one busy core with spinning waits).

With idle threads sleeping at once (OMP_WAIT_POLICY=PASSIVE) one thread per usable core is the better
default on a shared machine too: measured there, 2 threads took 0.75-0.87x the 1-thread time idle and
0.9-1.8x of it beside one or two busy cores, while 1 thread beside them took 1.7x to over 3x (a lone
thread gets only its fair share of the cores, which other users' threads shrink). OMP_NUM_THREADS, as a
batch scheduler sets it, wins over the core count.
"""

from __future__ import annotations

import os

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
    """torch threads for a run that does not set `threads`: OMP_NUM_THREADS when set, else every usable core."""
    try:
        requested = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        requested = 0
    if requested >= 1:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
