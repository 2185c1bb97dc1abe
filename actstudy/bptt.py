"""Hand-written backpropagation through time for the custom cells, compiled and in Python.

The compiled loop (actstudy/native/recurrent.cpp, wrapped by the Compiled*Function classes at the end of
this file) runs the LSTM with every Greff et al. variant, the GRU and the RNN, forward and backward, in
one native call per layer and direction (taking the inputs and W_ih, which it projects into its own buffer,
where the Python loop takes the projection); it is what the cells use wherever it could be built. The Python
functions below are its fallback (no compiler, a failed build, CUDA tensors) for the plain LSTM, GRU and
RNN; the Greff variants then loop their steps under autograd.

The Python loop, in detail:

Why: autograd records every small op of every time step and replays each one backwards, so an
eager custom cell pays per-op bookkeeping T times over (2.6-4.6x torch.nn.LSTM here, docs/background.md
§5). These functions run the recurrence without autograd and return the gradient in a few big
tensor ops plus a short loop per step:

- the forward loop keeps only what the backward needs (activated gates, cell states), and, for
  activations whose derivative is written in terms of their input, the pre-activations;
- the backward walks back through time in chunks of steps. For each chunk it first turns every
  slot's derivative into per-step factors in a few vectorised ops, so the reverse loop is left
  with 3-5 ops a step: the two recurrences (dh, and dc for the LSTM) and one matmul with W_hh;
  then the chunk's share of dL/dW_hh is one matmul over its steps' rows;
- the gradient of the input projection goes to `project` (below), which does W_ih, the biases
  and x in one matmul each.

Why chunks and per-step lists rather than (T, B, 4H) tensors: a tensor of tens of MB is mapped
fresh from the OS each time, and on the machines measured here faulting its pages in cost more
than the arithmetic on it (benchmarks/cells.py at 128 x 400 x 128). Chunk-sized temporaries are
reused from the heap step after step.

Each function takes the input projection of all steps (the cell's `project_inputs`) and W_hh and
returns the hidden states of all steps (T, B, H), starting from zero state. The cells in
cells.py remain the definition of the computation; tests pin these functions to them and to
torch.nn to float tolerance, values and every gradient.

The derivatives come from the activation registry (`Activation.grad`), which matches autograd's
conventions at the kinks (relu'(0) = 0, ...).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from actstudy.activations import Activation


def _chunks(steps: int, rows_per_step: int) -> list[tuple[int, int]]:
    """(start, end) spans covering 0..steps, last first, each about 256K floats of (., rows_per_step)."""
    size = max(1, (1 << 18) // max(1, rows_per_step))
    return [(max(0, end - size), end) for end in range(steps, 0, -size)]


def _previous(hs: Tensor, start: int, end: int) -> Tensor:
    """h_{t-1} for t in start..end-1 as (end - start, B, H), the zero initial state before step 0."""
    if start > 0:
        return hs[start - 1:end - 1]
    return torch.cat((hs.new_zeros((1,) + hs.shape[1:]), hs[:end - 1]), 0)



class _Projection(torch.autograd.Function):
    """x (N, I) @ W^T + b, with a backward that orders dL/dW's matmul for skinny inputs.

    autograd computes dL/dW = g^T x with g (N, G*H), which torch hands to the BLAS as a (G*H, N) by (N, I)
    product; with few input features (I <= 8: the adding problem's 2, MNIST-1D's 1) that product ran
    10-16x slower than the same numbers as (x^T g)^T (470 ms against 29 ms for N = 51,200, G*H = 512 on one
    core here): half of a custom LSTM's training step at 128/400/128. Same arithmetic, so the same values
    up to rounding."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.addmm(bias, x, weight.t())

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x, grad_weight = _projection_grads(x, weight, grad, *ctx.needs_input_grad[:2])
        grad_bias = grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


def _projection_grads(x: Tensor, weight: Tensor, grad: Tensor, want_x: bool, want_weight: bool):
    """dL/dx and dL/dW of x (N, I) @ W^T from its gradient grad (N, G*H), None where not wanted."""
    grad_x = grad.mm(weight) if want_x else None
    grad_weight = x.t().mm(grad).t() if want_weight else None  # (I, N)(N, G*H) -> (G*H, I)
    return grad_x, grad_weight


def project(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x (..., I) -> (..., G*H): the input projection of every step at once (a cell's `project_inputs`)."""
    if x.dim() < 2 or x.device.type != "cpu":  # one vector, or a GPU (where the slow case was not seen)
        return F.linear(x, weight, bias)
    flat = _Projection.apply(x.reshape(-1, x.shape[-1]), weight, bias)  # (..., I) -> (N, I) -> (N, G*H)
    return flat.view(*x.shape[:-1], weight.shape[0])

class LSTMFunction(torch.autograd.Function):
    """h_1..h_T of an LSTM (gates i, f, g, o in torch.nn's layout) from zero state."""

    @staticmethod
    def forward(ctx, projected: Tensor, weight_hh: Tensor, gate: Activation, candidate: Activation,
                output: Activation) -> Tensor:
        steps, batch, blocks = projected.shape  # (T, B, 4H): W_ih x_t + b_ih + b_hh
        hidden = blocks // 4
        keep_pre = "input" in (gate.derivative_of, candidate.derivative_of)
        h = projected.new_zeros(batch, hidden)
        c = projected.new_zeros(batch, hidden)
        w_t = weight_hh.t()
        gates, cells, squashed, outs, pres = [], [], [], [], []
        g_part = slice(2 * hidden, 3 * hidden)
        for projected_t in projected.unbind(0):
            pre = torch.addmm(projected_t, h, w_t)  # (B, 4H)
            # One gate call over all four blocks, then the candidate block replaced: two calls, not four.
            act = gate(pre)
            act[:, g_part] = candidate(pre[:, g_part])
            i, f, g, o = act.chunk(4, 1)
            c = torch.addcmul(f * c, i, g)
            out_c = output(c)
            h = o * out_c
            gates.append(act)
            cells.append(c)
            squashed.append(out_c)
            outs.append(h)
            if keep_pre:
                pres.append(pre)
        hs = torch.stack(outs, 0)  # T x (B, H) -> (T, B, H)
        ctx.slots = (gate, candidate, output)
        ctx.steps_kept = (gates, cells, squashed, pres if keep_pre else None)
        ctx.save_for_backward(weight_hh, hs)
        return hs

    @staticmethod
    def backward(ctx, grad_hs: Tensor):
        weight_hh, hs = ctx.saved_tensors
        gate, candidate, output = ctx.slots
        gates, cells, squashed, pres = ctx.steps_kept
        steps, batch, hidden = hs.shape
        g_part = slice(2 * hidden, 3 * hidden)
        zeros = hs.new_zeros(batch, hidden)
        grad_pre = hs.new_empty(steps, batch, 4 * hidden)  # dL/d pre-activation at every step
        grad_weight_hh = weight_hh.new_zeros(weight_hh.shape)
        grad_pre_t, grad_hs_t = grad_pre.unbind(0), grad_hs.unbind(0)
        dh, dc = grad_hs_t[-1], None
        for start, end in _chunks(steps, batch * 4 * hidden):
            acts = torch.stack(gates[start:end], 0)  # (k, B, 4H)
            pre = torch.stack(pres[start:end], 0) if pres is not None else None
            slope = gate.grad(pre, acts)  # gate' over i, f, o (the g block is replaced next)
            slope[..., g_part] = candidate.grad(None if pre is None else pre[..., g_part], acts[..., g_part])
            c = torch.stack(cells[start:end], 0)
            c_prev = torch.stack(([zeros] if start == 0 else [cells[start - 1]]) + cells[start:end - 1], 0)
            out_c = torch.stack(squashed[start:end], 0)
            i, f, g, o = acts.chunk(4, 2)
            # dA_t = [dc*g*i', dc*c_prev*f', dc*i*g', dh*out(c)*o']: factors of dc (first 3H), of dh (last H).
            factors_t = torch.cat((g, c_prev, i, out_c), 2).mul_(slope).unbind(0)
            through_t = (o * output.grad(c, out_c)).unbind(0)  # dc_t gets dh_t * o_t * output'(c_t)
            f_t = f.unbind(0)
            # f_{t+1} at the chunk's last step lives in the chunk after it (already done).
            f_after = gates[end][:, hidden:2 * hidden] if end < steps else None
            for t in range(end - 1, start - 1, -1):
                k = t - start
                if dc is None:
                    dc = dh * through_t[k]
                else:
                    dc = torch.addcmul(dc * (f_t[k + 1] if t + 1 < end else f_after), dh, through_t[k])
                # [dc, dc, dc, dh] against the four blocks' factors in one multiply (a broadcast over a
                # (B, 3, H) view measured 3x slower than building the (B, 4H) operand).
                torch.mul(factors_t[k], torch.cat((dc, dc, dc, dh), 1), out=grad_pre_t[t])
                if t > 0:
                    dh = torch.addmm(grad_hs_t[t - 1], grad_pre_t[t], weight_hh)  # dL/dh_{t-1}
            # dL/dW_hh += sum over the chunk of grad_pre_t^T h_{t-1}: (4H, k*B) @ (k*B, H)
            grad_weight_hh.addmm_(grad_pre[start:end].reshape(-1, 4 * hidden).t(),
                                  _previous(hs, start, end).reshape(-1, hidden))
        ctx.steps_kept = None
        return grad_pre, grad_weight_hh, None, None, None


class GRUFunction(torch.autograd.Function):
    """h_1..h_T of a GRU in torch.nn.GRU's form (blocks r, z, n) from zero state."""

    @staticmethod
    def forward(ctx, projected: Tensor, weight_hh: Tensor, bias_hh: Tensor, gate: Activation,
                candidate: Activation) -> Tensor:
        steps, batch, blocks = projected.shape  # (T, B, 3H): W_ih x_t + b_ih
        hidden = blocks // 3
        two = 2 * hidden
        keep_pre = "input" in (gate.derivative_of, candidate.derivative_of)
        h = projected.new_zeros(batch, hidden)
        w_t = weight_hh.t()
        # Per-step views made once: unbind costs one op for all T, slicing inside the loop one per step.
        projected_rz = projected[..., :two].unbind(0)
        projected_n = projected[..., two:].unbind(0)
        rzs, ns, outs, pre_rzs, pre_ns = [], [], [], [], []
        for t in range(steps):
            recurrent = torch.addmm(bias_hh, h, w_t)  # (B, 3H): U h + b_hh
            pre_rz = projected_rz[t] + recurrent[:, :two]
            rz = gate(pre_rz)
            pre_n = torch.addcmul(projected_n[t], rz[:, :hidden], recurrent[:, two:])
            n = candidate(pre_n)
            h = torch.addcmul(n, rz[:, hidden:], h - n)  # (1 - z) n + z h_prev
            rzs.append(rz)
            ns.append(n)
            outs.append(h)
            if keep_pre:
                pre_rzs.append(pre_rz)
                pre_ns.append(pre_n)
        hs = torch.stack(outs, 0)  # (T, B, H)
        ctx.slots = (gate, candidate)
        # U_n h + b_hn is not kept: a view of it would pin every step's whole (B, 3H) recurrent term, so the
        # backward recomputes it from hs, one matmul per chunk.
        ctx.steps_kept = (rzs, ns, pre_rzs if keep_pre else None, pre_ns if keep_pre else None)
        ctx.save_for_backward(weight_hh, bias_hh, hs)
        return hs

    @staticmethod
    def backward(ctx, grad_hs: Tensor):
        weight_hh, bias_hh, hs = ctx.saved_tensors
        gate, candidate = ctx.slots
        rzs, ns, pre_rzs, pre_ns = ctx.steps_kept
        steps, batch, hidden = hs.shape
        grad_h = torch.empty_like(hs)  # dL/dh_t, total, for every t
        grad_projected = hs.new_empty(steps, batch, 3 * hidden)
        grad_weight_hh = weight_hh.new_zeros(weight_hh.shape)
        grad_bias_hh = weight_hh.new_zeros(3 * hidden)
        grad_h[-1] = grad_hs[-1]
        grad_h_t, grad_hs_t = grad_h.unbind(0), grad_hs.unbind(0)
        for start, end in _chunks(steps, batch * 3 * hidden):
            rz = torch.stack(rzs[start:end], 0)  # (k, B, 2H)
            n = torch.stack(ns[start:end], 0)
            slope_rz = gate.grad(None if pre_rzs is None else torch.stack(pre_rzs[start:end], 0), rz)
            slope_n = candidate.grad(None if pre_ns is None else torch.stack(pre_ns[start:end], 0), n)
            r, z = rz.chunk(2, 2)
            h_prev = _previous(hs, start, end)
            recurrent_n = torch.addmm(bias_hh[2 * hidden:], h_prev.reshape(-1, hidden),
                                      weight_hh[2 * hidden:].t()).view_as(n)  # U_n h_prev + b_hn, (k, B, H)
            # Every pre-activation gradient is dh_t times a factor known before the loop:
            #   d pre_n = dh (1 - z) n',  d pre_z = dh (h_prev - n) z',  d pre_r = d pre_n * (U_n h + b_hn) r'.
            factor_n = (1.0 - z).mul_(slope_n)
            factor_z = (h_prev - n).mul_(slope_rz[..., hidden:])
            factor_r = factor_n * recurrent_n * slope_rz[..., :hidden]
            # The recurrent side differs from the input side only in n: r scales U_n h + b_hn.
            factors_hh = torch.cat((factor_r, factor_z, factor_n * r), 2)  # (k, B, 3H)
            grad_hh = torch.empty_like(factors_hh)  # dL/d(U h_prev + b_hh) at the chunk's steps
            factors_hh_t, z_t, grad_hh_t = factors_hh.unbind(0), z.unbind(0), grad_hh.unbind(0)
            for t in range(end - 1, start - 1, -1):
                k = t - start
                dh = grad_h_t[t]
                torch.mul(factors_hh_t[k], torch.cat((dh, dh, dh), 1), out=grad_hh_t[k])
                if t > 0:
                    direct = torch.addcmul(grad_hs_t[t - 1], dh, z_t[k])  # from above, and through z h_prev
                    torch.addmm(direct, grad_hh_t[k], weight_hh, out=grad_h_t[t - 1])
            # Input side: d(W_ih x + b_ih) = dh * [factor_r, factor_z, factor_n], per block.
            factors = torch.stack((factor_r, factor_z, factor_n), 2)  # (k, B, 3, H)
            torch.mul(factors, grad_h[start:end, :, None, :],
                      out=grad_projected[start:end].view(end - start, batch, 3, hidden))
            grad_weight_hh.addmm_(grad_hh.reshape(-1, 3 * hidden).t(), h_prev.reshape(-1, hidden))
            grad_bias_hh.add_(grad_hh.sum((0, 1)))
        ctx.steps_kept = None
        return grad_projected, grad_weight_hh, grad_bias_hh, None, None


class RNNFunction(torch.autograd.Function):
    """h_1..h_T of a vanilla RNN, h_t = candidate(W x_t + b + U h_{t-1}), from zero state."""

    @staticmethod
    def forward(ctx, projected: Tensor, weight_hh: Tensor, candidate: Activation) -> Tensor:
        steps, batch, hidden = projected.shape  # (T, B, H): W_ih x_t + b_ih + b_hh
        keep_pre = candidate.derivative_of == "input"
        h = projected.new_zeros(batch, hidden)
        w_t = weight_hh.t()
        outs, pres = [], []
        for projected_t in projected.unbind(0):
            pre = torch.addmm(projected_t, h, w_t)
            h = candidate(pre)
            outs.append(h)
            if keep_pre:
                pres.append(pre)
        hs = torch.stack(outs, 0)  # (T, B, H)
        ctx.candidate = candidate
        ctx.pres = pres if keep_pre else None
        ctx.save_for_backward(weight_hh, hs)
        return hs

    @staticmethod
    def backward(ctx, grad_hs: Tensor):
        weight_hh, hs = ctx.saved_tensors
        steps, batch, hidden = hs.shape
        grad_pre = torch.empty_like(hs)
        grad_weight_hh = weight_hh.new_zeros(weight_hh.shape)
        grad_pre_t, grad_hs_t = grad_pre.unbind(0), grad_hs.unbind(0)
        dh = grad_hs_t[-1]
        for start, end in _chunks(steps, batch * hidden):
            pre = torch.stack(ctx.pres[start:end], 0) if ctx.pres is not None else None
            slope_t = ctx.candidate.grad(pre, hs[start:end]).unbind(0)
            for t in range(end - 1, start - 1, -1):
                torch.mul(dh, slope_t[t - start], out=grad_pre_t[t])
                if t > 0:
                    dh = torch.addmm(grad_hs_t[t - 1], grad_pre_t[t], weight_hh)
            grad_weight_hh.addmm_(grad_pre[start:end].reshape(-1, hidden).t(), _previous(hs, start, end).reshape(-1, hidden))
        ctx.pres = None
        return grad_pre, grad_weight_hh, None


# --------------------------------------------------------------------------- the compiled loop
#
# The same recurrences in one native call per layer and direction (actstudy/native/recurrent.cpp): the
# forward over all T steps and the backward through time, each step one BLAS matmul plus one fused
# pointwise pass. These wrap it for autograd; the Python functions above remain the fallback where it
# cannot be built. `compiled_calls` counts forward calls per cell type, so tests can prove it ran.

compiled_calls: Counter = Counter()


def _absent(like: Tensor) -> Tensor:
    return like.new_empty(0)  # the native side reads an empty tensor as "this cell has none"


class CompiledLSTMFunction(torch.autograd.Function):
    """h_1..h_T of an LSTM or any Greff et al. variant, from zero state, by the compiled loop.

    Like every compiled function it takes the inputs xs (T, B, I), W_ih and the summed bias rather than
    their projection (the Python loop's functions take that): the loop projects them straight into its own pre-activation buffer, which spares
    a (T, B, G*H) tensor, the broadcast of the bias into it and a copy of it (~10% of a training step at
    64/200/128), and sums the bias gradient while each row is in cache.

    `layout` = (blocks, peeps, coupled): the block index of i, f, g, o in the projection (-1: gate
    absent), the row of i, f, o in `peephole` (-1: none), and whether f = 1 - i. `peephole` (P, H) and
    `recurrence` (3H, 3H) may be None.
    """

    @staticmethod
    def forward(ctx, xs: Tensor, weight_ih: Tensor, bias: Tensor, weight_hh: Tensor, peephole: Optional[Tensor],
                recurrence: Optional[Tensor], module: Any, layout: tuple, codes: list[int],
                slopes: list[float]) -> Tensor:
        compiled_calls["lstm"] += 1
        peep = peephole if peephole is not None else _absent(xs)
        rec = recurrence if recurrence is not None else _absent(xs)
        hs, acts, cells, pres = module.lstm_forward(xs, weight_ih, bias, weight_hh, peep, rec, *layout, codes,
                                                    slopes)
        ctx.config = (module, layout, codes, slopes, peephole is not None, recurrence is not None)
        ctx.save_for_backward(xs, weight_ih, weight_hh, peep, rec, hs, acts, cells, pres)
        return hs

    @staticmethod
    @once_differentiable  # the native backward records no graph: a second derivative must fail, not read 0
    def backward(ctx, grad_hs: Tensor):
        module, layout, codes, slopes, has_peephole, has_recurrence = ctx.config
        xs, weight_ih, *kept = ctx.saved_tensors
        grad_pre, grad_bias, grad_weight_hh, grad_peephole, grad_recurrence = module.lstm_backward(
            grad_hs, *kept, *layout, codes, slopes)
        grad_xs, grad_weight_ih = _input_grads(ctx, xs, weight_ih, grad_pre)
        return (grad_xs, grad_weight_ih, grad_bias, grad_weight_hh, grad_peephole if has_peephole else None,
                grad_recurrence if has_recurrence else None, None, None, None, None)


class CompiledGRUFunction(torch.autograd.Function):
    """h_1..h_T of a GRU in torch.nn.GRU's form, from zero state, by the compiled loop, from the inputs xs
    (T, B, I), W_ih and b_ih (which it projects itself, as CompiledLSTMFunction does)."""

    @staticmethod
    def forward(ctx, xs: Tensor, weight_ih: Tensor, bias_ih: Tensor, weight_hh: Tensor, bias_hh: Tensor, module: Any,
                codes: list[int], slopes: list[float]) -> Tensor:
        compiled_calls["gru"] += 1
        hs, acts, pres = module.gru_forward(xs, weight_ih, bias_ih, weight_hh, bias_hh, codes, slopes)
        ctx.config = (module, codes, slopes)
        ctx.save_for_backward(xs, weight_ih, weight_hh, bias_hh, hs, acts, pres)
        return hs

    @staticmethod
    @once_differentiable  # the native backward records no graph: a second derivative must fail, not read 0
    def backward(ctx, grad_hs: Tensor):
        module, codes, slopes = ctx.config
        xs, weight_ih, *kept = ctx.saved_tensors
        grad_pre, grad_bias_ih, grad_weight_hh, grad_bias_hh = module.gru_backward(grad_hs, *kept, codes, slopes)
        grad_xs, grad_weight_ih = _input_grads(ctx, xs, weight_ih, grad_pre)
        return grad_xs, grad_weight_ih, grad_bias_ih, grad_weight_hh, grad_bias_hh, None, None, None


class CompiledRNNFunction(torch.autograd.Function):
    """h_1..h_T of a vanilla RNN, from zero state, by the compiled loop, from the inputs xs (T, B, I), W_ih
    and the summed bias (which it projects itself, as CompiledLSTMFunction does)."""

    @staticmethod
    def forward(ctx, xs: Tensor, weight_ih: Tensor, bias: Tensor, weight_hh: Tensor, module: Any, codes: list[int],
                slopes: list[float]) -> Tensor:
        compiled_calls["rnn"] += 1
        hs, pres = module.rnn_forward(xs, weight_ih, bias, weight_hh, codes, slopes)
        ctx.config = (module, codes, slopes)
        ctx.save_for_backward(xs, weight_ih, weight_hh, hs, pres)
        return hs

    @staticmethod
    @once_differentiable  # the native backward records no graph: a second derivative must fail, not read 0
    def backward(ctx, grad_hs: Tensor):
        module, codes, slopes = ctx.config
        xs, weight_ih, *kept = ctx.saved_tensors
        grad_pre, grad_bias, grad_weight_hh = module.rnn_backward(grad_hs, *kept, codes, slopes)
        grad_xs, grad_weight_ih = _input_grads(ctx, xs, weight_ih, grad_pre)
        return grad_xs, grad_weight_ih, grad_bias, grad_weight_hh, None, None, None


def _input_grads(ctx, xs: Tensor, weight_ih: Tensor, grad_pre: Tensor) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """dL/dxs (T, B, I) and dL/dW_ih of a compiled function whose first two inputs are xs and W_ih, from the
    gradient of its pre-activations (T, B, G*H); None where autograd does not ask for them."""
    rows = grad_pre.view(-1, grad_pre.shape[-1])  # (T, B, G*H) -> (T*B, G*H)
    grad_xs, grad_weight_ih = _projection_grads(xs.reshape(-1, xs.shape[-1]), weight_ih, rows,
                                                *ctx.needs_input_grad[:2])
    return (grad_xs.view(xs.shape) if grad_xs is not None else None), grad_weight_ih
