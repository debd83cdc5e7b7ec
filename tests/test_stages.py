"""Tests for hmmrnn.stages glue that the workflow tests do not reach directly."""

import dataclasses

import numpy as np
import pytest

from hmmrnn import stages
from hmmrnn._utils import read_json
from hmmrnn.config import TrainingConfig
from hmmrnn.hmm import HMM


def test_keep_weights_fidelity_builds_an_hmm_fidelity_selection():
    hmm = HMM(states=2, outputs=3, emission_method="linear")
    val, _ = hmm.sample(200, 10, np.random.default_rng(0))
    kw = stages.trainer_kwargs(TrainingConfig(keep_weights="fidelity", select_epochs=4), hmm, val)
    assert kw["keep_weights"] == "score" and kw["select_epochs"] == 4
    assert kw["select_score"](val) == 0.0
    assert kw["select_score"](np.zeros((5, 10), int)) > 0  # never switching: too regular
    with pytest.raises(ValueError, match="keep_weights 'fidelity'.*pass hmm and val"):
        stages.trainer_kwargs(TrainingConfig(keep_weights="fidelity"))
    plain = stages.trainer_kwargs(TrainingConfig(keep_weights="last"))
    assert plain["keep_weights"] == "last" and "select_score" not in plain
    averaged = stages.trainer_kwargs(TrainingConfig(keep_weights="average", average_epochs=4))
    assert (averaged["keep_weights"], averaged["average_epochs"]) == ("average", 4)
    assert averaged["select_epochs"] is None and "select_score" not in averaged


def test_train_candidate_with_fidelity_selection_records_the_scores(tmp_path):
    data = tmp_path / "data.parquet"
    stages.generate_data(
        hmm={"states": 2, "outputs": 3, "emission_method": "linear"},
        data={"num_seq": 600, "seq_len": 8},
        seed=1,
        path=data,
    )
    training = dataclasses.replace(
        TrainingConfig(), batch_size=100, epochs=3, keep_weights="fidelity", select_epochs=2,
        select_seq=200,
    )  # fmt: skip
    rnn = {"input_size": 4, "hidden_size": 12, "num_layers": 1, "rnn_bias": True,
           "readout_bias": False}  # fmt: skip
    # Left by an earlier attempt killed (SIGKILL) while writing its outputs.
    stale = [tmp_path / ".model.pth.k1ll3d.tmp", tmp_path / ".history.json.k1ll3d.tmp"]
    for path in stale:
        path.write_text("half written")
    stages.train_candidate(
        data_path=data,
        rnn=rnn,
        training=dataclasses.asdict(training),
        learning_rate=0.01,
        seed=2,
        model_path=tmp_path / "model.pth",
        history_path=tmp_path / "history.json",
        device="cpu",
    )
    assert not any(path.exists() for path in stale)
    history = read_json(tmp_path / "history.json")
    epochs = [e for e, _ in history["select_scores"]]
    assert epochs == [1, 2]
    scores = dict(history["select_scores"])
    assert history["best_epoch"] == min(scores, key=scores.get)
    assert all(s >= 0 for s in scores.values())
