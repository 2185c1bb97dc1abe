"""Fair tuning: Hydra's Optuna sweeper picks the learning rate by each trial's best validation loss."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import TINY


def test_optuna_minimises_the_validation_loss_of_the_trials(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "tune"
    result = cli("sweep", *TINY, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                 "hydra.sweeper.sampler.seed=0", "optim.lr=tag(log, interval(1e-4, 1e-1))",
                 f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 0, result.output
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    trials = [json.loads((d / "summary.json").read_text()) for d in sweep_dir.iterdir()
              if (d / "summary.json").exists()]
    assert len(trials) == 3 and all(t["status"] == "completed" for t in trials)
    # the sweeper's best value is the smallest best-epoch validation loss, never a test number
    assert best["best_value"] == pytest.approx(min(t["best_val_loss"] for t in trials))
    assert 1e-4 <= best["best_params"]["optim.lr"] <= 1e-1
