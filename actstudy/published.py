"""Published results to show beside ours (docs/background.md §3), each with its source.

A result applies to a configuration group when task, sequence length and cell match; the settings the
publication used beyond that (sizes, optimiser, readout) are listed in `setting`, and the report names every
one where our run differs, so a reader sees whether the comparison is like for like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ARJOVSKY = "Arjovsky, Shah & Bengio 2016, Unitary evolution RNNs"
BAI = "Bai, Kolter & Koltun 2018, An empirical evaluation of generic convolutional and recurrent networks"
GREYDANUS = "Greydanus & Kobak 2024, Scaling down deep learning with MNIST-1D"
CLASSIC = {"model.activation.gate": "sigmoid", "model.activation.candidate": "tanh"}
LSTM_CLASSIC = {**CLASSIC, "model.activation.output": "tanh"}
IRNN = {"model.activation.candidate": "relu", "model.init": "irnn"}
TANH_RNN = {"model.activation.candidate": "tanh", "model.init": "default"}
TANH_RNN_ANY_INIT = {"model.activation.candidate": "tanh"}  # where the publication's init is a setting
# Every published result records these settings (docs/background.md §3), so that none is silently taken as
# ours. `updates`, `train_sequences` and `clipping` are not config keys: the report derives ours from the runs
# (`our_setting`). NOT_STATED marks what the publication does not say; it is never counted as the same.
SETTING_KEYS = ("model.hidden_size", "optim.name", "optim.lr", "updates", "train_sequences", "clipping")
NOT_STATED = "not stated"
FRESH = "fresh"  # training sequences generated anew for every batch
ALL_NOT_STATED = dict.fromkeys(SETTING_KEYS, NOT_STATED)
# Adding: hidden 128, RMSProp 1e-3, ~2·10⁴ updates on freshly generated sequences, batch 20; their code adds
# element-wise clipping at 1 and an RMSProp whose mean of g^2 has alpha 0.9 and starts at 1e-3.
ARJOVSKY_ADDING = {"model.hidden_size": 128, "optim.name": "rmsprop", "optim.lr": 0.001, "updates": 20000,
                   "train_sequences": FRESH, "clipping": "element-wise", "train.batch_size": 20,
                   "optim.alpha": 0.9, "optim.square_avg_init": 0.001}
# Their LSTM and tanh-RNN drew every matrix Glorot-uniform (the IRNN's recurrence is its identity).
ARJOVSKY_ADDING_GLOROT = {**ARJOVSKY_ADDING, "model.init": "glorot"}
# Copy: an LSTM of 40 units and element-wise clipping; learning rate, budget and data regime not stated.
ARJOVSKY_COPY = {**ALL_NOT_STATED, "model.hidden_size": 40, "optim.name": "rmsprop", "clipping": "element-wise"}
# Adding T=600: 50,000 training sequences for 10 epochs; models of ~70K parameters, no hidden size given.
BAI_ADDING = {**ALL_NOT_STATED, "train_sequences": 50000}
GREYDANUS_GRU = {"model.hidden_size": 6, "optim.name": "adam", "optim.lr": 0.01, "updates": 6000,
                 "train_sequences": 4000, "clipping": "none", "model.bidirectional": True, "model.readout": "all",
                 "train.batch_size": 100}


@dataclass(frozen=True)
class Published:
    task: str
    seq_lens: tuple[Any, ...] | None  # None: the task has no length
    cell: str
    identity: dict[str, Any]  # what makes it this model (activations, init): must match to apply at all
    result: str  # the published figure, as text
    source: str
    setting: dict[str, Any]  # the published settings: every SETTING_KEY (NOT_STATED where unknown), and more
    value: float | None = None  # the figure as a number in our metric or loss, where there is one
    quantity: str = ""  # "loss" or "metric": what `value` is


PUBLISHED = [
    Published("adding", (100, 200, 400, 750), "lstm", LSTM_CLASSIC,
              "clearly below the baseline MSE 0.167 up to T=400", ARJOVSKY, ARJOVSKY_ADDING_GLOROT),
    Published("adding", (100, 200, 400, 750), "rnn", TANH_RNN_ANY_INIT, "never below the baseline MSE 0.167",
              ARJOVSKY, ARJOVSKY_ADDING_GLOROT),
    # Their IRNN "only ran without blowing up" at very low learning rates, which they do not give: not 1e-3.
    Published("adding", (100, 200, 400, 750), "rnn", IRNN, "never below the baseline MSE 0.167", ARJOVSKY,
              {**ARJOVSKY_ADDING, "optim.lr": NOT_STATED}),
    Published("adding", (600,), "lstm", LSTM_CLASSIC, "test MSE 0.164", BAI, BAI_ADDING, 0.164, "loss"),
    Published("adding", (600,), "gru", CLASSIC, "test MSE 5.3e-5", BAI, BAI_ADDING, 5.3e-5, "loss"),
    Published("adding", (600,), "rnn", TANH_RNN, "test MSE 0.177", BAI, BAI_ADDING, 0.177, "loss"),
    Published("copy", (100,), "lstm", LSTM_CLASSIC, "beats the memoryless baseline (CE 0.173)", ARJOVSKY,
              ARJOVSKY_COPY),
    Published("copy", (200, 300, 500), "lstm", LSTM_CLASSIC, "does not beat the memoryless baseline", ARJOVSKY,
              ARJOVSKY_COPY),
    Published("copy", (1000,), "lstm", LSTM_CLASSIC, "CE 0.0204 (baseline 0.0204)", BAI, ALL_NOT_STATED, 0.0204, "loss"),
    Published("copy", (1000,), "gru", CLASSIC, "CE 0.0197 (baseline 0.0204)", BAI, ALL_NOT_STATED, 0.0197, "loss"),
    Published("copy", (1000,), "rnn", TANH_RNN, "CE 0.0202 (baseline 0.0204)", BAI, ALL_NOT_STATED, 0.0202, "loss"),
    Published("mnist1d", None, "gru", CLASSIC, "test accuracy 91% (98.2% train vs 89.1% test at step 6,000)",
              GREYDANUS, GREYDANUS_GRU, 0.91, "metric"),
]
# Other published MNIST-1D test accuracies, drawn as reference lines beside our models (same source).
MNIST1D_REFERENCE_LINES = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91, "human": 0.96}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
    if isinstance(a, str) and b == "element-wise":  # a kind of clipping whose threshold was not published
        return a.startswith("element-wise ") and " and " not in a
    return a == b


def published_for(task: str, seq_len: Any, cell: str, config: dict[str, Any]) -> list[tuple[Published, list[str]]]:
    """The published results that apply to one configuration, each with every setting that is not known to be
    the same: where ours differs, where the publication does not say, and where ours was not recorded. An
    empty list, and only that, means the same setting.

    `config` is a run's flattened config, with `our_setting`'s measured values merged in where known.
    """
    found = []
    for entry in PUBLISHED:
        if entry.task != task or entry.cell != cell:
            continue
        if entry.seq_lens is not None and seq_len not in entry.seq_lens:
            continue
        if not all(_same(config.get(k, _default(k)), v) for k, v in entry.identity.items()):
            continue
        found.append((entry, setting_differences(entry.setting, config)))
    return found


def setting_differences(published: dict[str, Any], config: dict[str, Any]) -> list[str]:
    notes = []
    for key, theirs in published.items():
        ours = config.get(key, _default(key))
        if theirs == NOT_STATED:
            notes.append(f"{key}: ours {_show(ours)}, published not stated")
        elif ours is None and key in SETTING_KEYS:
            notes.append(f"{key}: ours not recorded (published {theirs})")
        elif not _same(ours, theirs):
            notes.append(f"{key}={_show(ours)} (published {theirs})")
    return notes


def our_setting(config: dict[str, Any], updates: Any = None, train_sequences: Any = None) -> dict[str, Any]:
    """The derived settings of our runs: updates (as the runs recorded them), the training set (FRESH when
    task.train_size=null draws new sequences) and the kind of clipping (train.clip_grad clips the norm,
    train.clip_value each entry)."""
    clip, clip_value = config.get("train.clip_grad"), config.get("train.clip_value")
    kinds = ([] if clip is None else [f"norm {clip:g}"]) + ([] if clip_value is None else [f"element-wise {clip_value:g}"])
    fresh = config.get("task.name") in ("adding", "copy") and "task.train_size" in config and config["task.train_size"] is None
    return {
        "updates": updates,
        "train_sequences": FRESH if fresh else train_sequences,
        "clipping": " and ".join(kinds) or "none",
    }


def _show(value: Any) -> str:
    return "not recorded" if value is None else str(value)


def _default(key: str) -> Any:
    # older runs have no init key: their recurrence used the default initialisation
    # and keys added later (RMSProp's alpha and starting mean) held torch's values
    return {"model.init": "default", "model.bidirectional": False, "model.readout": "last", "optim.alpha": 0.99,
            "optim.square_avg_init": 0.0}.get(key)


def nearest_published(task: str, seq_len: Any, cell: str, config: dict[str, Any]) -> str | None:
    """For a configuration no published result applies to: one line naming the nearest published settings
    of the same task and what differs, or saying the task has none; None when some result applies."""
    if published_for(task, seq_len, cell, config):
        return None
    scored = []
    for entry in PUBLISHED:
        if entry.task != task:
            continue
        differences = []
        if entry.seq_lens is not None and seq_len not in entry.seq_lens:
            differences.append(f"T={seq_len} (published {', '.join(str(t) for t in entry.seq_lens)})")
        if entry.cell != cell:
            differences.append(f"cell {cell} (published {entry.cell})")
        differences += [f"{k}={config.get(k, _default(k))} (published {v})"
                        for k, v in entry.identity.items() if not _same(config.get(k, _default(k)), v)]
        scored.append((len(differences), entry, differences))
    if not scored:
        return f"No published result for task {task}."
    fewest = min(n for n, _, _ in scored)
    nearest = [(entry, differences) for n, entry, differences in scored if n == fewest]
    entry, differences = nearest[0]
    also = f" (and {len(nearest) - 1} more as near)" if len(nearest) > 1 else ""
    authors = re.match(r".*?\d{4}", entry.source)
    return (f"No published result matches; nearest: {authors[0] if authors else entry.source}, {entry.cell} "
            f"({entry.result}){also}; ours differs in {'; '.join(differences)}.")
