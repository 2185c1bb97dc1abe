"""The reproduction studies in conf/study/ compose with Hydra, and every run they mean is a valid config."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from actstudy.config import ConfigError, check_buildable, compose, compose_many, config_dir

STUDIES = sorted(path.stem for path in Path(config_dir(), "study").glob("*.yaml"))  # every study file, new ones too


def compose_study(name: str, extra: tuple[str, ...] = ()):
    """`study=NAME` where conf/config.yaml lists a study group (the sweeps work), else `+study=NAME`."""
    try:
        return compose([f"study={name}", *extra], with_hydra=True)
    except ConfigError:
        return compose([f"+study={name}", *extra], with_hydra=True)


def jobs(cfg) -> list[list[str]]:
    axes = [[f"{key}={v}" for v in str(values).split(",")] for key, values in cfg.hydra.sweeper.params.items()]
    return [list(combo) for combo in itertools.product(*axes)]


def assert_tuned_and_paired(cfg) -> None:
    """A comparison study: the report picks each configuration's learning rate on validation (unasked) from a
    grid of at least 3, and every configuration runs the same 5 seeds, so comparisons pair them."""
    assert list(cfg.select) == ["optim.lr"]
    assert len({float(v) for v in str(cfg.hydra.sweeper.params["optim.lr"]).split(",")}) >= 3
    assert str(cfg.hydra.sweeper.params.seed).split(",") == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("name", STUDIES)
def test_study_composes_and_says_how_long_it_takes(name):
    header = open(f"{config_dir()}/study/{name}.yaml").read()
    # Each file says how long it takes on this kind of machine: measured where it was run whole, else estimated.
    assert header.startswith("# @package _global_")
    assert "Measured on 2 cores" in header or "Estimated time on 2 cores" in header
    cfg = compose_study(name)
    # One thread per run, set by the file or, under hydra/launcher=joblib, by the sweep (cores split between jobs)
    assert cfg.hydra.sweeper.params and (cfg.threads == 1 or "hydra/launcher=joblib" in header)
    for run in compose_many([[f"study={name}", *job] for job in jobs(cfg)]):  # every run it means is valid
        check_buildable(run)


@pytest.mark.parametrize("name", [n for n in STUDIES if compose_study(n).get("extra_runs")])
def test_a_study_s_extra_runs_are_valid_and_lie_outside_its_grid(name):
    """Each of extra_runs replaces some of the study's axes: every run it means must be valid, new (not one the
    grid has) and, what extras are for, take one of the study's swept keys to a value its grid lacks."""
    from actstudy.sweeps import run_dir_name, sweep_arguments

    cfg = compose_study(name)
    params = dict(cfg.hydra.sweeper.params)
    grid = {run_dir_name(run) for run in compose_many([[f"study={name}", *job] for job in jobs(cfg)])}
    for extra in cfg.extra_runs:
        runs = compose_many([[f"study={name}", *job] for job in sweep_arguments(list(extra), params)])
        for run in runs:
            check_buildable(run)
        assert not grid & {run_dir_name(run) for run in runs}, extra
        swept = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in extra if o.split("=", 1)[0] in params}
        assert any(value not in str(params[key]).split(",") for key, value in swept.items()), extra


def test_adding_lengths_is_arjovskys_lstm_setting_on_fresh_data():
    cfg = compose_study("adding_lengths")
    assert len(jobs(cfg)) == 10  # T = 100, 200 x 5 seeds
    for job in jobs(cfg)[::5]:
        run = compose_study("adding_lengths", tuple(job))
        check_buildable(run)
        assert (run.model.cell, run.model.hidden_size, run.optim.name, run.optim.lr) == ("lstm", 128, "rmsprop", 1e-3)
        assert (run.train.batch_size, run.train.max_updates, run.task.train_size) == (20, 50000, None)
        assert run.train.stop_when_solved
        # as their code has it: element-wise clipping, Glorot init with forget bias 1, their RMSProp
        assert (run.train.clip_grad, run.train.clip_value, run.model.init, run.model.forget_bias) == (None, 1.0, "glorot", 1.0)
        assert (run.optim.alpha, run.optim.square_avg_init) == (0.9, 1e-3)


def test_adding_rnn_controls_cross_activation_and_init_including_the_irnn():
    cfg = compose_study("adding_rnn_controls")
    runs = jobs(cfg)
    assert len(runs) == 20
    seen = set()
    for job in runs[::5]:  # every activation x init; the seeds do not change validity
        run = compose_study("adding_rnn_controls", tuple(job))
        check_buildable(run)
        seen.add((run.model.cell, run.model.activation.candidate, run.model.init))
    assert seen == {("rnn", a, i) for a in ("tanh", "relu") for i in ("glorot", "irnn")}  # irnn + relu = the IRNN
    assert (run.optim.alpha, run.optim.square_avg_init, run.train.clip_grad, run.train.clip_value) == (0.9, 1e-3, None, 1.0)


def test_adding_rnn_controls_reference_is_their_lstm_in_the_same_setting():
    """The tanh-RNN sits at the baseline, so the study's first report reads every RNN against the LSTM of the
    file's second command: adding_lengths' T = 100 run but for the budget, and a reference the report's
    --reference pairs pick out for every activation and init of the RNN."""
    lstm = compose_study("adding_rnn_controls", ("model=lstm", "model.init=glorot", "model.activation.candidate=tanh",
                                                 "seed=0"))
    check_buildable(lstm)
    same = compose_study("adding_lengths", ("task.seq_len=100", "seed=0"))
    assert {k for k, v in flat(lstm).items() if flat(same).get(k) != v} == {"train.max_updates"}
    header = open(f"{config_dir()}/study/adding_rnn_controls.yaml").read()
    named = {"model.cell": "lstm", "model.init": "glorot", "model.activation.candidate": "tanh", "model.forget_bias": "1"}
    assert all(f"--reference {k}={v}" in header for k, v in named.items())
    assert_is_reference(flat(lstm), named)
    for candidate, init in itertools.product(("tanh", "relu"), ("glorot", "irnn")):
        rnn = flat(compose_study("adding_rnn_controls", (f"model.activation.candidate={candidate}", f"model.init={init}",
                                                         "seed=0")))
        assert {k for k, v in flat(lstm).items() if rnn.get(k) != v} <= set(named)  # paired with the LSTM


def test_claims_tunes_the_learning_rate_per_cell_and_gate_and_keeps_the_output_slot_command_valid():
    cfg = compose_study("claims")
    runs = jobs(cfg)
    assert len(runs) == 2 * 2 * 4 * 6 * 5  # tasks x cells x gates x learning rates x seeds
    assert_tuned_and_paired(cfg)
    for job in runs[:: 23]:  # a spread of tasks, cells, gates and rates
        check_buildable(compose_study("claims", tuple(job)))
    # the output slot's command from the study file: the LSTM alone, sigmoid gates, three outputs
    output = compose_study("claims", ("task=mnist1d", "model=lstm", "model.activation.gate=sigmoid",
                                      "model.activation.output=relu"))
    assert output.model.cell == "lstm" and output.model.activation.output == "relu"
    check_buildable(output)


def test_greff_variants_tune_the_learning_rate_per_variant_on_tasks_the_vanilla_lstm_learns():
    cfg = compose_study("greff_variants")
    runs = jobs(cfg)
    assert len(runs) == 9 * 2 * 5 * 5  # variants x tasks x learning rates x seeds
    assert_tuned_and_paired(cfg)
    adding = compose_study("greff_variants", ("task=adding", "model.variant=fgr"))
    assert adding.task.train_size is None and adding.train.max_updates and adding.train.stop_when_solved  # fresh
    check_buildable(adding)


def test_activation_grid_tunes_the_learning_rate_per_cell_and_candidate_where_the_references_learn():
    cfg = compose_study("activation_grid")
    runs = jobs(cfg)
    assert len(runs) == 2 * 2 * 6 * 5 * 5  # tasks x cells x candidates x learning rates x seeds
    assert_tuned_and_paired(cfg)
    for cell in ("lstm", "gru"):  # fresh adding sequences, a budget in updates, stopped once solved
        adding = compose_study("activation_grid", ("task=adding", f"model={cell}", "model.activation.candidate=elu"))
        assert adding.task.train_size is None and adding.train.max_updates and adding.train.stop_when_solved
        assert adding.model.activation.candidate == "elu" and adding.model.hidden_size == 64
        check_buildable(adding)


def test_copy_arjovsky_is_their_copy_lstm_with_element_wise_clipping():
    run = compose_study("copy_arjovsky", ("seed=3",))
    check_buildable(run)
    assert (run.task.name, run.task.seq_len, run.task.train_size, run.model.hidden_size) == ("copy", 100, None, 40)
    assert (run.optim.name, run.optim.lr, run.train.batch_size) == ("rmsprop", 1e-3, 20)
    assert run.train.clip_grad is None and run.train.clip_value == 1.0


def flat(cfg) -> dict:
    """Every key of a run config (hydra's own aside) as dotted path -> value, as the report reads them."""
    from omegaconf import OmegaConf

    from actstudy.report.loading import flatten

    return flatten(OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True))


def report_reference(name: str) -> dict[str, str]:
    """The --reference pairs of the `actstudy report` command a study file's header gives (its comment lines
    up to the next empty one, backslash continuations joined), read by the CLI's own parser."""
    from actstudy.report.compare import parse_reference

    header = open(f"{config_dir()}/study/{name}.yaml").read()
    command = header[header.index("actstudy report"):]
    words = command[:command.index("\n#\n")].replace("\\", " ").replace("#", " ").split()
    return parse_reference([words[i + 1] for i, word in enumerate(words) if word == "--reference"])


def assert_is_reference(run: dict, named: dict[str, str]) -> None:
    """The report would take `run` (flattened) as the reference these pairs name."""
    from actstudy.report.compare import _matches

    assert all(_matches(run[key], value) for key, value in named.items()), (named, {k: run[k] for k in named})


def test_remedies_change_one_thing_each_from_the_reference_and_its_report_command_names_that_reference():
    cfg = compose_study("remedies")
    runs = jobs(cfg)
    assert_tuned_and_paired(cfg)
    remedies = str(cfg.hydra.sweeper.params["+remedy"]).split(",")
    assert len(runs) == len(remedies) * 5 * 5  # remedies x learning rates x seeds
    fixed = ("optim.lr=1e-2", "seed=0")
    reference = flat(compose_study("remedies", ("+remedy=none", *fixed)))
    expected = {"one_layer": {"model.num_layers"}, "dropout": {"model.dropout"}, "l2": {"optim.weight_decay"},
                "no_clip": {"train.clip_grad"}, "rmsprop": {"optim.name"}, "sgd": {"optim.name", "optim.momentum"}}
    assert set(remedies) == {"none", *expected}
    for remedy, keys in expected.items():
        run = compose_study("remedies", (f"+remedy={remedy}", *fixed))
        check_buildable(run)
        changed = {k for k, v in flat(run).items() if reference.get(k) != v}
        assert changed == keys, remedy
    # the small fixed training set where overfitting exists, the same in every run
    assert (reference["task.name"], reference["task.train_size"], reference["task.data_seed"]) == ("mnist1d", 500, 0)
    # the report command in the file names exactly the reference's values of every key a remedy changes
    named = report_reference("remedies")
    assert set(named) == set().union(*expected.values())
    assert_is_reference(reference, named)


def test_copy_delays_pairs_lstm_and_gru_in_arjovskys_copy_setting_with_the_learning_rate_tuned():
    cfg = compose_study("copy_delays")
    assert len(jobs(cfg)) == 2 * 2 * 6 * 5  # cells x delays x learning rates x seeds
    assert_tuned_and_paired(cfg)
    lstm, gru = (compose_study("copy_delays", (f"model={cell}", "task.seq_len=100")) for cell in ("lstm", "gru"))
    for run in (lstm, gru):
        check_buildable(run)
        assert (run.task.name, run.task.train_size, run.model.hidden_size, run.optim.name) == ("copy", None, 40, "rmsprop")
        assert (run.train.batch_size, run.train.clip_grad, run.train.clip_value) == (20, None, 1.0)
        assert run.model.impl == "custom" and run.train.stop_when_solved
    # the file's report command pairs them: the reference's keys are the only ones in which the two cells differ
    differ = {k for k, v in flat(lstm).items() if flat(gru).get(k) != v}
    named = report_reference("copy_delays")
    assert differ == set(named) == {"model.cell", "model.forget_bias"}
    assert_is_reference(flat(lstm), named)
