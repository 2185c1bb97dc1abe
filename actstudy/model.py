"""A recurrent stack with a linear readout: the whole network a run trains."""

from __future__ import annotations

import torch
from torch import nn

from actstudy.cells import build_stack


class SequenceModel(nn.Module):
    """Reads a task's sequences with a recurrent stack and maps hidden states to the task's outputs.

    A per-step task (the copy task) gets a prediction at every step; otherwise the last step's hidden state
    is read out once per sequence.
    """

    def __init__(self, model_cfg, input_size: int, output_size: int, per_step: bool):
        super().__init__()
        self.rnn = build_stack(model_cfg, input_size)
        self.head = nn.Linear(model_cfg.hidden_size, output_size)
        self.per_step = per_step

    @property
    def impl_used(self) -> str:
        return self.rnn.impl_used

    def forward(self, x: torch.Tensor, return_steps: bool = False):
        # x: (B, T, F) -> out: (B, T, H)
        result = self.rnn(x, return_steps=return_steps)
        out, steps = result if return_steps else (result, None)
        pred = self.head(out) if self.per_step else self.head(out[:, -1])  # (B, T, O) or (B, O)
        return (pred, steps) if return_steps else pred


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
