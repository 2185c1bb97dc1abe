"""How fast and how big one training step of each cell implementation is, next to torch.nn.

For each (batch, T, hidden) shape and for LSTM and GRU, one training step (forward, backward, Adam) of:

    torch.nn        nn.LSTM / nn.GRU (the reference of every ratio)
    fused           actstudy's stack on torch's fused kernel (what impl=auto picks for default slots)
    custom tanh     actstudy's custom cells with the default slots forced (impl=custom)
    custom relu     ... with a relu candidate
    custom leaky    ... with a leaky_relu candidate
    autograd relu   the relu cell looped under plain autograd (stack.bptt = False): the eager custom
                    cell a user would otherwise write, for context

Times are medians over --reps rounds; each round times every model once, one after another, so drift of
a shared machine hits all columns alike. Then: time per step of the custom LSTM at T=400 over T=100, and
peak resident memory of one step (each model in a child process, glibc told to return freed blocks, so
the peak is what the step really holds) as a ratio to torch.nn.

    python benchmarks/cells.py [--threads 1] [--reps 15] [--no-memory] [--device cpu|cuda]

Threads are fixed with torch.set_num_threads and denormals flushed with torch.set_flush_denormal(True),
and glibc's malloc is told to keep freed memory (actstudy.runtime.keep_freed_memory), as actstudy's
trainer does; the header says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actstudy.cells import RecurrentStack  # noqa: E402
from actstudy.runtime import keep_freed_memory  # noqa: E402

SHAPES = [(64, 100, 64), (64, 200, 128), (32, 200, 32), (128, 400, 128)]
INPUT = 2  # the adding problem's two features
# name -> (actstudy impl, candidate activation, hand-written backward?); None = torch.nn itself
MODELS = {
    "torch.nn": None,
    "fused": ("fused", "tanh", True),
    "custom tanh": ("custom", "tanh", True),
    "custom relu": ("custom", "relu", True),
    "custom leaky": ("custom", "leaky_relu", True),
    "autograd relu": ("custom", "relu", False),
}


def build(cell: str, name: str, hidden: int, device: torch.device) -> nn.Module:
    spec = MODELS[name]
    if spec is None:
        module = (nn.LSTM if cell == "lstm" else nn.GRU)(INPUT, hidden, batch_first=True)
    else:
        impl, candidate, hand_written = spec
        module = RecurrentStack(cell, INPUT, hidden, candidate=candidate, impl=impl)
        module.bptt = hand_written
    return module.to(device)


def make_step(model: nn.Module, x: torch.Tensor, device: torch.device):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out  # torch.nn returns (out, state)
        out[:, -1].pow(2).mean().backward()  # a loss on the last step, as in the adding problem
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def time_models(cell: str, names: list[str], shape: tuple[int, int, int], reps: int,
                device: torch.device) -> dict[str, float]:
    """Median seconds of one training step per model, the models interleaved round by round."""
    batch, steps, hidden = shape
    torch.manual_seed(0)
    x = torch.randn(batch, steps, INPUT, device=device)
    runs = {name: make_step(build(cell, name, hidden, device), x, device) for name in names}
    for step in runs.values():  # warm-up: first-call allocations, kernel selection, Adam state
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(reps):
        for name, step in runs.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory(cell: str, name: str, shape: tuple[int, int, int], threads: int, device: str) -> float:
    """Peak bytes one training step holds above what was resident before it, in a child process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    args = [sys.executable, __file__, "--memory-child", json.dumps([cell, name, list(shape), threads, device])]
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(spec: str) -> None:
    cell, name, shape, threads, device_name = json.loads(spec)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    device = torch.device(device_name)
    batch, steps, hidden = shape
    x = torch.randn(batch, steps, INPUT, device=device)
    step = make_step(build(cell, name, hidden, device), x, device)
    step()  # Adam state and one-time buffers exist before the measured step
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        print(torch.cuda.max_memory_allocated() - base)
        return
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = _rss_bytes("VmRSS")
    step()
    print(_rss_bytes("VmHWM") - base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    kept = keep_freed_memory()  # as the trainer does: without it every step re-faults its big tensors
    device = torch.device(args.device)
    names = list(MODELS)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, device {device}, torch.set_num_threads({args.threads}), "
          f"torch.set_flush_denormal(True), glibc keeps freed memory: {kept}, "
          f"median of {args.reps} interleaved rounds, load average {load:.1f}")
    print("one training step (forward, backward, Adam; input 2 features); ratios to torch.nn\n")
    print("| cell | batch, T, hidden | torch.nn (ms) | " + " | ".join(names[1:]) + " |")
    print("|---|---|---|" + "---|" * (len(names) - 1))
    for cell in ("lstm", "gru"):
        for shape in SHAPES:
            median = time_models(cell, names, shape, args.reps, device)
            reference = median["torch.nn"]
            ratios = " | ".join(f"{median[name] / reference:.2f}x" for name in names[1:])
            print(f"| {cell} | {', '.join(map(str, shape))} | {reference * 1e3:.1f} | {ratios} |", flush=True)

    print("\ncustom LSTM, time per time step at T=400 over T=100 (batch 64, hidden 128; 1.0 = linear in T)\n")
    print("| candidate | T=100 (ms) | T=400 (ms) | per-step ratio |")
    print("|---|---|---|---|")
    for name in ("custom tanh", "custom relu"):
        short = time_models("lstm", [name], (64, 100, 128), args.reps, device)[name]
        long = time_models("lstm", [name], (64, 400, 128), max(3, args.reps // 3), device)[name]
        print(f"| {MODELS[name][1]} | {short * 1e3:.1f} | {long * 1e3:.1f} | {(long / 400) / (short / 100):.2f} |",
              flush=True)

    if args.no_memory:
        return
    print("\npeak memory of one training step above what was resident before it (MB; ratio to torch.nn)\n")
    measured = ("torch.nn", "custom tanh", "custom relu", "autograd relu")
    print("| cell | batch, T, hidden | " + " | ".join(measured) + " |")
    print("|---|---|" + "---|" * len(measured))
    for cell in ("lstm", "gru"):
        for shape in SHAPES:
            peaks = {name: peak_memory(cell, name, shape, args.threads, args.device) for name in measured}
            reference = peaks["torch.nn"]
            cells = [f"{reference / 2**20:.1f}"] + [
                f"{peaks[name] / 2**20:.1f} ({peaks[name] / reference:.2f}x)" for name in measured[1:]]
            print(f"| {cell} | {', '.join(map(str, shape))} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
