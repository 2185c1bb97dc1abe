"""A recurrent stack with a linear readout: the whole network a run trains."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from actstudy.cells import build_stack
from actstudy.schema import MODEL_DEFAULTS

READOUTS = ("last", "all")


def check_readout(readout: str, per_step: bool, task_name: str = "this task") -> None:
    """A readout the model can build for a task: one of READOUTS, and `all` only for one target per
    sequence. Raises a one-line ValueError; the CLI's pre-flight calls it before any data is made."""
    if readout not in READOUTS:
        raise ValueError(f"model.readout={readout!r} is not valid; choose one of: {', '.join(READOUTS)}")
    if readout == "all" and per_step:
        raise ValueError(f"model.readout=all needs one target per sequence, but {task_name} has one per step; "
                         "choose model.readout=last")


class SequenceModel(nn.Module):
    """Reads a task's sequences with a recurrent stack and maps hidden states to the task's outputs.

    A per-step task (the copy task) gets a prediction at every step. Otherwise `model.readout` decides:
    `last` reads each sequence's last real step once (in a bidirectional stack: the forward direction
    there, beside the backward direction at step 0, i.e. each direction's final state); `all` puts one
    linear layer over the outputs of all `seq_len` steps (Greydanus & Kobak's MNIST-1D GRU), padded
    steps zeroed. A task whose inputs are tokens (`vocab_size` not None) gets an embedding layer of
    `input_size` features in front of the stack.
    """

    def __init__(self, model_cfg, input_size: int, output_size: int, per_step: bool,
                 vocab_size: Optional[int] = None, seq_len: Optional[int] = None):
        super().__init__()
        self.readout = getattr(model_cfg, "readout", None) or MODEL_DEFAULTS.readout
        check_readout(self.readout, per_step)
        if self.readout == "all" and seq_len is None:
            raise ValueError("model.readout=all needs the sequence length")
        self.embed = nn.Embedding(vocab_size, input_size) if vocab_size is not None else None
        self.rnn = build_stack(model_cfg, input_size)
        features = self.rnn.output_size * (seq_len if self.readout == "all" else 1)
        self.seq_len = seq_len
        self.head = nn.Linear(features, output_size)
        self.per_step = per_step

    @property
    def impl_used(self) -> str:
        return self.rnn.impl_used

    @property
    def compiled_build(self) -> Optional[str]:
        return self.rnn.compiled_build

    def forward(self, x: torch.Tensor, return_steps: bool = False, lengths: Optional[torch.Tensor] = None):
        """x (B, T, F) floats, or (B, T) token ids; `lengths` (B,) the real steps of right-padded sequences.

        Padding comes after a sequence's real steps, so in the forward direction it cannot reach them:
        reading step lengths[b] - 1 gives exactly what the unpadded sequence gives; the backward
        direction is told the lengths. Per-step outputs on padded steps are returned too; the task's
        loss leaves them out.
        """
        if self.embed is not None:
            x = self.embed(x)  # (B, T) -> (B, T, F)
        result = self.rnn(x, return_steps=return_steps, lengths=lengths)
        out, steps = result if return_steps else (result, None)  # out: (B, T, D*H)
        batch, steps_in = out.shape[0], out.shape[1]
        if self.per_step:
            pred = self.head(out)  # (B, T, O)
        elif self.readout == "all":
            if steps_in != self.seq_len:
                raise ValueError(f"model.readout=all was built for {self.seq_len} steps, got {steps_in}")
            if lengths is not None:
                real = torch.arange(steps_in, device=out.device)[None, :] < lengths.to(out.device)[:, None]
                out = out * real[:, :, None]  # (B, T, 1) mask: padded steps contribute nothing
            pred = self.head(out.reshape(batch, -1))  # (B, T, D*H) -> (B, T*D*H) -> (B, O)
        else:
            last = torch.full((batch,), steps_in - 1, device=out.device) if lengths is None \
                else (lengths.to(out.device) - 1).clamp_min(0)
            rows = torch.arange(batch, device=out.device)
            final = out[rows, last]  # (B, D*H): the forward direction's final state
            if self.rnn.bidirectional:
                hidden = self.rnn.hidden_size
                final = torch.cat((final[:, :hidden], out[:, 0, hidden:]), 1)  # backward's final state is at t=0
            pred = self.head(final)  # (B, O)
        return (pred, steps) if return_steps else pred


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
