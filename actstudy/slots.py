"""Which activation slots each cell has, and what each slot defaults to (docs/background.md §1).

Kept free of torch so that the report, which reads run directories only, can name a cell's slots without
importing the cells.
"""

SLOTS = {"lstm": ("gate", "candidate", "output"), "gru": ("gate", "candidate"), "rnn": ("candidate",)}
DEFAULT_ACTIVATIONS = {"gate": "sigmoid", "candidate": "tanh", "output": "tanh"}
DEFAULT_NEGATIVE_SLOPE = 0.01  # leaky_relu's slope when a config does not set it (torch's default too)
