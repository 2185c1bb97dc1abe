"""How fast and how big one training step of each cell implementation is, next to torch.nn.LSTM.

For each (batch, T, hidden) shape, one training step (forward, backward, Adam) of:

    nn.LSTM             the reference of every ratio
    fused LSTM          actstudy's stack on torch's fused kernel (what impl=auto picks for default slots)
    LSTM tanh/relu/leaky  actstudy's custom LSTM (impl=custom) with a tanh, relu, leaky_relu candidate:
                        the compiled sequence loop (actstudy/native)
    LSTM relu, Python loop  the same on the Python loop of actstudy/bptt.py (the fallback without a compiler)
    LSTM relu, autograd the relu cell looped under plain autograd: the eager custom cell a user would
                        otherwise write, for context
    <variant>           each Greff et al. variant (model.variant), compiled
    nn.GRU, GRU tanh/relu  torch's GRU and actstudy's custom one, compiled
    nn.RNN, RNN relu    the same for the vanilla RNN

Each cell reads "time / nn.LSTM's (per unit of arithmetic)": the second figure divides by the step's
multiply-adds relative to an LSTM's (input and recurrent matmuls: a GRU has 3/4 of them, NIG/NFG/CIFG 3/4,
FGR 1 + 9H/(4(H+I)), a vanilla RNN 1/4), so that it compares how close each runs to the arithmetic it must do.

Times are medians over --reps rounds; each round times every model once, one after another (each round
starting one model later), so drift of a shared machine hits all columns alike. Then: time per step at T=400 over T=100 (each model in a child
process, as a training run has its memory to itself, the two lengths interleaved), and peak resident memory
of one step (each model in a child process, on 4 KB pages, glibc told to return freed blocks, so the peak
is what the step really holds) as a ratio to torch.nn's.

    python benchmarks/cells.py [--threads 1] [--reps 9] [--no-memory] [--device cpu|cuda]
                               [--shapes 128,400,128 ...] [--models "LSTM leaky_relu" ...] [--scaling-only]

--shapes and --models narrow the run to what you are checking: nn.LSTM, the reference of every ratio, is
always timed beside the chosen models, and the memory table puts torch.nn's LSTM or GRU beside each; the
T-scaling table is left out when --models is given. --scaling-only prints that table alone: run it once as
is and once with ACTSTUDY_HUGE_PAGES=0 to see what huge pages change.

Threads are fixed with torch.set_num_threads and denormals flushed with torch.set_flush_denormal(True),
Python's cycle collector leaves the objects made before timing alone (actstudy.runtime.freeze_long_lived_objects),
and glibc's malloc is told to keep freed memory (actstudy.runtime.keep_freed_memory) and, through a
restart, to put big blocks on huge pages (actstudy.runtime.restart_with_huge_pages; ACTSTUDY_HUGE_PAGES=0
turns it off), as the actstudy command does; the header says so, with the CPU model and the load average
(before and after).
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

from actstudy import native  # noqa: E402
from actstudy.cells import VARIANTS, RecurrentStack  # noqa: E402
from actstudy.runtime import (freeze_long_lived_objects, huge_pages_in_use, keep_freed_memory,  # noqa: E402
                              restart_with_huge_pages, thaw_long_lived_objects)

SHAPES = [(64, 100, 64), (64, 200, 128), (32, 200, 32), (128, 400, 128)]
INPUT = 2  # the adding problem's two features

# name -> (cell, RecurrentStack keywords, loop); cell "nn.lstm" etc. is torch.nn itself. loop: "compiled",
# "python" (bptt.py) or "autograd" (per-step cells).
MODELS: dict[str, tuple[str, dict, str]] = {
    "nn.LSTM": ("nn.lstm", {}, ""),
    "fused LSTM": ("lstm", {"impl": "fused"}, ""),
    "LSTM tanh": ("lstm", {"impl": "custom"}, "compiled"),
    "LSTM relu": ("lstm", {"candidate": "relu"}, "compiled"),
    "LSTM leaky_relu": ("lstm", {"candidate": "leaky_relu"}, "compiled"),
    "LSTM relu, Python loop": ("lstm", {"candidate": "relu"}, "python"),
    "LSTM relu, autograd": ("lstm", {"candidate": "relu"}, "autograd"),
    **{f"variant {name}": ("lstm", {"variant": name, "impl": "custom"}, "compiled") for name in VARIANTS},
    "nn.GRU": ("nn.gru", {}, ""),
    "GRU tanh": ("gru", {"impl": "custom"}, "compiled"),
    "GRU relu": ("gru", {"candidate": "relu"}, "compiled"),
    "nn.RNN relu": ("nn.rnn", {}, ""),
    "RNN relu": ("rnn", {"candidate": "relu", "impl": "custom"}, "compiled"),
}
# The T-scaling and memory tables: the custom cells that matter most, beside their torch.nn counterpart.
FLAT_IN_T = ("nn.LSTM", "LSTM tanh", "LSTM relu", "variant vanilla", "GRU tanh")
SCALING_BATCH, SCALING_HIDDEN, SCALING_T = 64, 128, (100, 400)
MEMORY = {"lstm": ("nn.LSTM", "LSTM tanh", "LSTM relu", "LSTM leaky_relu", "variant vanilla", "variant fgr"),
          "gru": ("nn.GRU", "GRU tanh", "GRU relu")}


def arithmetic(name: str, hidden: int) -> float:
    """Multiply-adds of one step's input and recurrent matmuls, relative to an LSTM's 4H(H+I)."""
    cell, kwargs, _ = MODELS[name]
    cell = cell.removeprefix("nn.")
    blocks = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    variant = kwargs.get("variant")
    if variant in ("nig", "nfg", "nog", "cifg"):
        blocks = 3
    extra = 9 * hidden * hidden if variant == "fgr" else 0  # FGR's (3H, 3H) gate recurrence
    return (blocks * hidden * (hidden + INPUT) + extra) / (4 * hidden * (hidden + INPUT))


def build(name: str, hidden: int, device: torch.device) -> nn.Module:
    cell, kwargs, loop = MODELS[name]
    if cell.startswith("nn."):
        module = {"nn.lstm": nn.LSTM, "nn.gru": nn.GRU}.get(cell)
        module = module(INPUT, hidden, batch_first=True) if module else nn.RNN(
            INPUT, hidden, nonlinearity="relu", batch_first=True)
    else:
        module = RecurrentStack(cell, INPUT, hidden, **kwargs)
        module.bptt = loop != "autograd"
        module.compiled = loop == "compiled"
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


def time_models(names: list[str], shape: tuple[int, int, int], reps: int, device: torch.device) -> dict[str, float]:
    """Median seconds of one training step per model, the models interleaved round by round."""
    batch, steps, hidden = shape
    torch.manual_seed(0)
    x = torch.randn(batch, steps, INPUT, device=device)
    return interleaved_medians({name: make_step(build(name, hidden, device), x, device) for name in names}, reps)


def interleaved_medians(runs: dict, reps: int) -> dict:
    """Median seconds of each step function, after two warm-up calls, timed round by round in turn; each
    round starts one model later, so that none is always the one timed after another model's step."""
    for step in runs.values():  # warm-up: first-call allocations, kernel selection, Adam state
        step()
        step()
    freeze_long_lived_objects()  # as a training run does before its loop
    times = {key: [] for key in runs}
    order = list(runs)
    for round_ in range(reps):
        for key in order[round_ % len(order):] + order[: round_ % len(order)]:
            start = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - start)
    thaw_long_lived_objects()
    return {key: statistics.median(values) for key, values in times.items()}


def peak_memory(name: str, shape: tuple[int, int, int], threads: int, device: str) -> float:
    """Peak bytes one training step holds above what was resident before it, in a child process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    env.pop("GLIBC_TUNABLES", None)  # on 4 KB pages: huge ones would round a small model's peak up in 2 MB steps
    args = [sys.executable, __file__, "--memory-child", json.dumps([name, list(shape), threads, device])]
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(spec: str) -> None:
    name, shape, threads, device_name = json.loads(spec)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    device = torch.device(device_name)
    batch, steps, hidden = shape
    x = torch.randn(batch, steps, INPUT, device=device)
    step = make_step(build(name, hidden, device), x, device)
    step()  # Adam state, one-time buffers and the compiled module exist before the measured step
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


def scaling(name: str, threads: int, reps: int, device: str) -> dict[int, float]:
    """Median seconds of one step at T=100 and T=400 of one model, in a child process of its own (as a
    training run has the machine's memory to itself), the two lengths interleaved round by round."""
    args = [sys.executable, __file__, "--scaling-child", json.dumps([name, threads, reps, device])]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return {int(steps): seconds for steps, seconds in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def scaling_child(spec: str) -> None:
    name, threads, reps, device_name = json.loads(spec)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    keep_freed_memory()
    device = torch.device(device_name)
    model = build(name, SCALING_HIDDEN, device)
    torch.manual_seed(0)
    runs = {steps: make_step(model, torch.randn(SCALING_BATCH, steps, INPUT, device=device), device)
            for steps in SCALING_T}
    print(json.dumps(interleaved_medians(runs, reps)))


def parse_shape(parser: argparse.ArgumentParser, text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        parser.error(f"--shapes {text!r}: give batch,T,hidden as three positive integers, e.g. 128,400,128")
    return shape


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument("--shapes", nargs="+", metavar="B,T,H", help="batch,T,hidden shapes (default: the four)")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="models to time (default: all): "
                        + "; ".join(MODELS))
    parser.add_argument("--scaling-only", action="store_true",
                        help="only the time-per-step table at T=100 and T=400 (with ACTSTUDY_HUGE_PAGES=0 beside it, "
                             "what huge pages change)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--scaling-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    if args.scaling_child:
        scaling_child(args.scaling_child)
        return
    restart_with_huge_pages()  # as the actstudy command does (ACTSTUDY_HUGE_PAGES=0: not)
    shapes = [parse_shape(parser, text) for text in args.shapes] if args.shapes else SHAPES
    unknown = [name for name in args.models or [] if name not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from: {', '.join(MODELS)}")
    names = ["nn.LSTM", *[n for n in args.models if n != "nn.LSTM"]] if args.models else list(MODELS)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    kept = keep_freed_memory()  # as the trainer does: without it every step re-faults its big tensors
    device = torch.device(args.device)
    loop = "compiled loop built" if native.load() is not None else f"NO compiled loop ({native.unavailable_reason()})"
    print(f"{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; "
          f"torch {torch.__version__}, device {device}, torch.set_num_threads({args.threads}), "
          f"torch.set_flush_denormal(True), glibc keeps freed memory: {kept}, huge pages: {huge_pages_in_use()}; "
          f"{loop}; "
          f"median of {args.reps} interleaved rounds")
    if not args.scaling_only:
        print("one training step (forward, backward, Adam; input 2 features): time / nn.LSTM's "
              "(per unit of arithmetic)\n")
        results = {shape: time_models(names, shape, args.reps, device) for shape in shapes}
        print("| model | " + " | ".join(", ".join(map(str, shape)) for shape in shapes) + " |")
        print("|---|" + "---|" * len(shapes))
        print("| nn.LSTM (ms) | " + " | ".join(f"{results[shape]['nn.LSTM'] * 1e3:.1f}" for shape in shapes) + " |")
        for name in names[1:]:
            cells = []
            for shape in shapes:
                ratio = results[shape][name] / results[shape]["nn.LSTM"]
                cells.append(f"{ratio:.2f}x ({ratio / arithmetic(name, shape[2]):.2f}x)")
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    if not args.models or args.scaling_only:
        print("\ntime per time step at T=400 over T=100 (batch 64, hidden 128; 1.00 = linear in T; each model in a "
              "process of its own, the two lengths interleaved)\n")
        print("| model | T=100 (ms) | T=400 (ms) | per-step ratio |")
        print("|---|---|---|---|")
        for name in FLAT_IN_T:
            seconds = scaling(name, args.threads, args.reps, args.device)
            short, long = seconds[100], seconds[400]
            print(f"| {name} | {short * 1e3:.1f} | {long * 1e3:.1f} | {(long / 400) / (short / 100):.2f} |", flush=True)

    if not args.no_memory and not args.scaling_only:
        print("\npeak memory of one training step above what was resident before it (MB; ratio to torch.nn's)\n")
        for cell, measured in MEMORY.items():
            if args.models:  # the chosen models of this cell beside torch.nn's
                measured = (measured[0], *[n for n in measured[1:] if n in names])
                if len(measured) == 1:
                    continue
            print("| batch, T, hidden | " + " | ".join(measured) + " |")
            print("|---|" + "---|" * len(measured))
            for shape in shapes:
                peaks = {name: peak_memory(name, shape, args.threads, args.device) for name in measured}
                reference = peaks[measured[0]]
                cells = [f"{reference / 2**20:.1f}"] + [
                    f"{peaks[name] / 2**20:.1f} ({peaks[name] / reference:.2f}x)" for name in measured[1:]]
                print(f"| {', '.join(map(str, shape))} | " + " | ".join(cells) + " |", flush=True)
            print()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
