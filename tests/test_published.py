"""Published anchors carry their settings, and a comparison never calls a setting the same when it is unknown."""

from __future__ import annotations

from actstudy.published import NOT_STATED, PUBLISHED, SETTING_KEYS, our_setting, published_for

LSTM = {"model.activation.gate": "sigmoid", "model.activation.candidate": "tanh", "model.activation.output": "tanh"}


def test_every_published_result_records_every_setting():
    for entry in PUBLISHED:
        assert set(SETTING_KEYS) <= set(entry.setting), entry.result


def test_a_setting_the_publication_does_not_state_is_never_the_same():
    config = {"task.name": "copy", "model.hidden_size": 40, "optim.name": "rmsprop", "optim.lr": 0.001,
              "train.clip_grad": None, "train.clip_value": 1.0, "task.train_size": None, **LSTM}
    [(entry, notes)] = published_for("copy", 100, "lstm", {**config, **our_setting(config, updates=20000)})
    assert notes == ["optim.lr: ours 0.001, published not stated", "updates: ours 20000, published not stated",
                     "train_sequences: ours fresh, published not stated"]  # everything else matches


def test_arjovskys_adding_setting_as_their_code_has_it():
    paper = {"task.name": "adding", "model.hidden_size": 128, "optim.name": "rmsprop", "optim.lr": 0.001,
             "optim.alpha": 0.9, "optim.square_avg_init": 0.001, "model.init": "glorot", "train.batch_size": 20,
             "train.clip_grad": None, "train.clip_value": 1.0, "task.train_size": None, **LSTM}
    [(_, notes)] = published_for("adding", 200, "lstm", {**paper, **our_setting(paper, updates=50000)})
    assert notes == ["updates=50000 (published 20000)"]
    # torch's RMSProp, its init and norm clipping: each named, even for a run made before the keys existed
    older = {k: v for k, v in paper.items() if not k.startswith("optim.") or k in ("optim.name", "optim.lr")}
    older.update({"model.init": "default", "train.clip_grad": 1.0, "train.clip_value": None})
    [(_, notes)] = published_for("adding", 100, "lstm", {**older, **our_setting(older, updates=20000)})
    assert sorted(notes) == ["clipping=norm 1 (published element-wise)", "model.init=default (published glorot)",
                             "optim.alpha=0.99 (published 0.9)", "optim.square_avg_init=0.0 (published 0.001)"]
    # the tanh-RNN's init is a setting; the IRNN's is what makes it the IRNN
    rnn = {**paper, "model.activation.candidate": "tanh"}
    assert [e.result for e, _ in published_for("adding", 100, "rnn", rnn)] == ["never below the baseline MSE 0.167"]
    irnn = {**paper, "model.activation.candidate": "relu", "model.init": "irnn"}
    [(entry, notes)] = published_for("adding", 100, "rnn", {**irnn, **our_setting(irnn, updates=20000)})
    assert entry.identity["model.init"] == "irnn"
    assert notes == ["optim.lr: ours 0.001, published not stated"]  # their IRNN needed far lower, unstated rates


def test_every_differing_setting_is_named():
    config = {"task.name": "copy", "model.hidden_size": 64, "optim.name": "adam", "optim.lr": 0.003,
              "train.clip_grad": 1.0, "task.train_size": 4000, **LSTM}
    [(_, notes)] = published_for("copy", 100, "lstm", {**config, **our_setting(config, 800, 4000)})
    assert "model.hidden_size=64 (published 40)" in notes
    assert "optim.name=adam (published rmsprop)" in notes
    assert "clipping=norm 1 (published element-wise)" in notes
    assert any(n.startswith("optim.lr: ours 0.003, published not stated") for n in notes)
    assert len(notes) == len(SETTING_KEYS)  # here no setting is known to be the same


def test_element_wise_clipping_is_the_copy_papers_kind_and_norm_clipping_is_not():
    config = {"task.name": "copy", "model.hidden_size": 40, "optim.name": "rmsprop", "optim.lr": 0.001,
              "task.train_size": None, **LSTM}
    for clip_grad, clip_value, same in ((None, 1.0, True), (1.0, None, False), (1.0, 1.0, False)):
        setting = {**config, "train.clip_grad": clip_grad, "train.clip_value": clip_value}
        [(_, notes)] = published_for("copy", 100, "lstm", {**setting, **our_setting(setting, 20000)})
        assert any(n.startswith("clipping") for n in notes) is not same, notes
    assert our_setting({"train.clip_grad": 1.0, "train.clip_value": 0.5})["clipping"] == "norm 1 and element-wise 0.5"


def test_the_same_setting_only_when_everything_is_known_and_equal():
    config = {"task.name": "mnist1d", "model.hidden_size": 6, "optim.name": "adam", "optim.lr": 0.01,
              "train.clip_grad": None, "model.bidirectional": True, "model.readout": "all", "train.batch_size": 100,
              "model.activation.gate": "sigmoid", "model.activation.candidate": "tanh"}
    [(_, notes)] = published_for("mnist1d", None, "gru", {**config, **our_setting(config, 6000, 4000)})
    assert notes == []
    [(_, unrecorded)] = published_for("mnist1d", None, "gru", {**config, **our_setting(config)})
    assert unrecorded == ["updates: ours not recorded (published 6000)",
                          "train_sequences: ours not recorded (published 4000)"]
    assert NOT_STATED not in " ".join(notes)
