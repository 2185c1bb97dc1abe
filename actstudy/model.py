"""A recurrent stack with a linear readout: the whole network a run trains."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from actstudy.cells import build_stack


class SequenceModel(nn.Module):
    """Reads a task's sequences with a recurrent stack and maps hidden states to the task's outputs.

    A per-step task (the copy task) gets a prediction at every step; otherwise each sequence's last real
    step is read out once per sequence. A task whose inputs are tokens (`vocab_size` not None) gets an
    embedding layer of `input_size` features in front of the stack.
    """

    def __init__(self, model_cfg, input_size: int, output_size: int, per_step: bool,
                 vocab_size: Optional[int] = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, input_size) if vocab_size is not None else None
        self.rnn = build_stack(model_cfg, input_size)
        self.head = nn.Linear(model_cfg.hidden_size, output_size)
        self.per_step = per_step

    @property
    def impl_used(self) -> str:
        return self.rnn.impl_used

    def forward(self, x: torch.Tensor, return_steps: bool = False, lengths: Optional[torch.Tensor] = None):
        """x (B, T, F) floats, or (B, T) token ids; `lengths` (B,) the real steps of right-padded sequences.

        Padding comes after a sequence's real steps, so in a unidirectional stack it cannot reach them:
        reading step lengths[b] - 1 gives exactly what the unpadded sequence gives. Per-step outputs on
        padded steps are returned too; the task's loss leaves them out.
        """
        if self.embed is not None:
            x = self.embed(x)  # (B, T) -> (B, T, F)
        result = self.rnn(x, return_steps=return_steps)
        out, steps = result if return_steps else (result, None)  # out: (B, T, H)
        if self.per_step:
            pred = self.head(out)  # (B, T, O)
        elif lengths is None:
            pred = self.head(out[:, -1])  # (B, O)
        else:
            last = (lengths.to(out.device) - 1).clamp_min(0)
            pred = self.head(out[torch.arange(out.shape[0], device=out.device), last])  # (B, H) -> (B, O)
        return (pred, steps) if return_steps else pred


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
