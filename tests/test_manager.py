"""Manager: the seed's notebook API runs the same Snakemake workflow (one pipeline, one cache)."""

from __future__ import annotations

import pytest

from hmmrnn.config import ConfigError
from hmmrnn.manager import Manager
from tests.test_workflow import copy_workflow

pytestmark = pytest.mark.slow

TINY = {
    "data": {"num_seq": 240, "seq_len": 6},
    "rnn": {"input_size": 3, "hidden_size": 8},
    "training": {"batch_size": 40, "epochs": 2, "learning_rates": [0.01]},
    "test": {"num_seq": 60, "max_kgram": 2},
    "reverse": {"num_seq": 10},
}
OPTIONS = {
    "device": "cpu",
    "threads": {"train": 1, "test": 1, "reverse": 1},
    "plots": {"num_points_2d": 20, "num_points_3d": 30},
}


def test_manager_runs_and_reuses_the_workflow(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    manager = Manager(TINY, "HMMSmall", workdir=workdir, cores=2, workflow_options=OPTIONS)
    rnn = manager.run_training()
    assert rnn.hidden_size == 8
    model = workdir / "results" / "HMMSmall" / "models" / "rnn.pth"
    first = model.stat().st_mtime_ns

    summary = manager.run_experiment()
    assert summary["experiment"] == "HMMSmall"
    assert summary["config"]["hmm"]["states"] == 2
    assert (workdir / "results/HMMSmall/figs/latent_trajectory_3d.html").is_file()
    assert model.stat().st_mtime_ns == first  # training was cached, not repeated

    path = manager.save_config()
    again = Manager.load_config(path, workdir=workdir, cores=2)
    assert again.config == manager.config
    again.run_experiment()
    assert model.stat().st_mtime_ns == first


def test_manager_rejects_bad_configuration_before_running(tmp_path):
    with pytest.raises(ConfigError, match="unknown config_name"):
        Manager(config_name="Enormous", workdir=tmp_path)
    with pytest.raises(ConfigError, match=r"hmm\.states: expected an integer"):
        Manager({"hmm": {"states": "two"}}, "HMMSmall", workdir=tmp_path)
