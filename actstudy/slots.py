"""Which activation slots each cell has, and what each slot defaults to (reference.md §1).

Kept free of torch so that the report, which reads run directories only, can name a cell's slots without
importing the cells.
"""

SLOTS = {"lstm": ("gate", "candidate", "output"), "gru": ("gate", "candidate"), "rnn": ("candidate",)}
DEFAULT_ACTIVATIONS = {"gate": "sigmoid", "candidate": "tanh", "output": "tanh"}
