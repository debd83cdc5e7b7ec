"""Preemption: a training job killed mid-run (SIGTERM or SIGKILL) resumes from its checkpoint
and ends with exactly the model and history of an uninterrupted run, leaving no output behind
that a later run could take for complete."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hmmrnn import stages
from hmmrnn.config import TrainingConfig

pytestmark = pytest.mark.slow

RNN = {
    "input_size": 4,
    "hidden_size": 24,
    "num_layers": 1,
    "rnn_bias": False,
    "readout_bias": False,
}
TRAINING = {"batch_size": 100, "epochs": 14, "learning_rates": [0.01], "checkpoint_every": 1}


def train_process(data: Path, out: Path) -> subprocess.Popen:
    """`stages.train_candidate` in its own process, as a workflow job runs it."""
    training = dataclasses.asdict(dataclasses.replace(TrainingConfig(), **TRAINING))
    kwargs = dict(
        data_path=str(data),
        rnn=RNN,
        training=training,
        learning_rate=0.01,
        seed=5,
        model_path=str(out / "model.pth"),
        history_path=str(out / "history.json"),
        checkpoint_dir=str(out / ".checkpoints"),
        device="cpu",
    )
    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from hmmrnn import stages\n"
        "stages.train_candidate(**json.loads(sys.argv[1]))\n"
    )
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(kwargs)])


def wait_for_new_checkpoint(folder: Path, proc: subprocess.Popen, after: float = 0.0) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        files = list(folder.glob("*.pt")) if folder.exists() else []
        if files and max(f.stat().st_mtime for f in files) > after:
            time.sleep(0.2)  # let the epoch after the checkpoint begin
            return
        if proc.poll() is not None:
            pytest.fail(f"training finished (rc={proc.returncode}) before it could be killed")
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared within 300 s")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "hmm_sequences.parquet"
    stages.generate_data(
        hmm={"states": 2, "outputs": 3, "emission_method": "linear"},
        data={"num_seq": 1500, "seq_len": 10},
        seed=3,
        path=path,
    )
    return path


def test_killed_training_resumes_to_the_uninterrupted_result(data, tmp_path):
    straight = tmp_path / "straight"
    proc = train_process(data, straight)
    assert proc.wait(timeout=600) == 0

    resumed = tmp_path / "resumed"
    checkpoints = resumed / ".checkpoints"
    last = 0.0
    for sig in (signal.SIGTERM, signal.SIGKILL):  # preemption, then a hard kill
        proc = train_process(data, resumed)
        wait_for_new_checkpoint(checkpoints, proc, after=last)
        last = max(f.stat().st_mtime for f in checkpoints.glob("*.pt"))
        proc.send_signal(sig)
        assert proc.wait(timeout=60) != 0
        # Nothing that looks complete: no model, no history.
        assert not (resumed / "model.pth").exists() and not (resumed / "history.json").exists()
        if sig == signal.SIGTERM:  # handled: the write in progress is cleaned up
            assert not list(resumed.rglob("*.tmp"))
        # A SIGKILL mid-save can leave a temp file; the next run removes it (checked below).
    # Each restart went on from where the previous one stopped.
    progress = torch.load(next(checkpoints.glob("*.pt")), weights_only=True)
    assert 2 <= len(progress["history"]["val_loss"]) < TRAINING["epochs"]

    proc = train_process(data, resumed)
    assert proc.wait(timeout=600) == 0
    assert not list(checkpoints.glob("*.pt"))  # finished: the checkpoint is no longer needed
    assert not list(resumed.rglob("*.tmp"))

    a = json.loads((straight / "history.json").read_text())
    b = json.loads((resumed / "history.json").read_text())
    assert a == b and len(a["val_loss"]) == TRAINING["epochs"]
    ma = torch.load(straight / "model.pth", weights_only=True)["state_dict"]
    mb = torch.load(resumed / "model.pth", weights_only=True)["state_dict"]
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
