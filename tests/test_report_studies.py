"""The reproduction studies in conf/study/ compose with Hydra, and every run they mean is a valid config."""

from __future__ import annotations

import itertools

import pytest

from actstudy.config import ConfigError, check_buildable, compose, compose_many, config_dir

STUDIES = ["adding_lengths", "copy_delays", "mnist1d_gru", "greff_variants", "claims"]


def compose_study(name: str, extra: tuple[str, ...] = ()):
    """`study=NAME` where conf/config.yaml lists a study group (the sweeps work), else `+study=NAME`."""
    try:
        return compose([f"study={name}", *extra], with_hydra=True)
    except ConfigError:
        return compose([f"+study={name}", *extra], with_hydra=True)


def jobs(cfg) -> list[list[str]]:
    axes = [[f"{key}={v}" for v in str(values).split(",")] for key, values in cfg.hydra.sweeper.params.items()]
    return [list(combo) for combo in itertools.product(*axes)]


@pytest.mark.parametrize("name", STUDIES)
def test_study_composes_and_says_how_long_it_takes(name):
    header = open(f"{config_dir()}/study/{name}.yaml").read()
    # Each file says how long it takes on this kind of machine: measured where it was run whole, else estimated.
    assert header.startswith("# @package _global_")
    assert "Measured on 2 cores" in header or "Estimated time on 2 cores" in header
    cfg = compose_study(name)
    assert cfg.hydra.sweeper.params and cfg.threads == 1
    for run in compose_many([[f"study={name}", *job] for job in jobs(cfg)]):  # every run it means is valid
        check_buildable(run)


def test_adding_lengths_means_36_valid_runs_including_the_irnn():
    cfg = compose_study("adding_lengths")
    runs = jobs(cfg)
    assert len(runs) == 36
    for job in runs[:: 3]:  # every model × length; the seeds do not change validity
        run = compose_study("adding_lengths", tuple(job))
        check_buildable(run)
        if "model=irnn" in job:
            assert (run.model.cell, run.model.activation.candidate, run.model.init) == ("rnn", "relu", "irnn")


def test_claims_grid_is_valid_for_both_cells_on_every_task():
    cfg = compose_study("claims")
    runs = jobs(cfg)
    assert len(runs) == 216
    for job in runs[:: 27]:  # a spread of cells, gates, candidates and tasks
        check_buildable(compose_study("claims", tuple(job)))
