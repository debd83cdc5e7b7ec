"""Tests for hmmrnn.checkpoint: round trip and clear errors for bad files."""

import numpy as np
import pytest
import torch

from hmmrnn.checkpoint import (
    FORMAT_TAG,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from hmmrnn.model import NoiseRNN


def module():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return NoiseRNN(4, 8, num_layers=2, output_size=3, rnn_bias=True, readout_bias=True)


def write(path, m=None):
    m = m or module()
    return save_checkpoint(
        path,
        m.state_dict(),
        config={"model": m.config(), "training": {"learning_rate": 1e-3, "betas": [0.9, 0.9]}},
        history={"train_loss": [3.0, 2.0], "val_loss": [3.5, 2.5]},
        seed=11,
        extra={"best_epoch": 1, "optimizer": {"step": torch.tensor(4.0)}},
    )


def test_round_trip(tmp_path):
    m = module()
    path = write(tmp_path / "sub" / "model.pth", m)
    assert [p.name for p in path.parent.iterdir()] == ["model.pth"]  # no temp file left
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == FORMAT_TAG and ckpt["version"] == 1
    assert ckpt["config"]["model"] == m.config()
    assert ckpt["config"]["training"] == {"learning_rate": 1e-3, "betas": [0.9, 0.9]}
    assert ckpt["history"] == {"train_loss": [3.0, 2.0], "val_loss": [3.5, 2.5]}
    assert ckpt["seed"] == 11 and "torch" in ckpt["versions"]
    assert ckpt["extra"]["best_epoch"] == 1
    assert torch.equal(ckpt["extra"]["optimizer"]["step"], torch.tensor(4.0))
    for k, v in m.state_dict().items():
        assert torch.equal(ckpt["state_dict"][k], v)
    # Readable by plain torch without trusting pickles.
    assert torch.load(path, weights_only=True)["format"] == FORMAT_TAG


def test_model_from_checkpoint_rebuilds_identical_module(tmp_path):
    m = module()
    path = write(tmp_path / "model.pth", m)
    for source in (path, load_checkpoint(path)):
        m2 = model_from_checkpoint(source)
        assert m2.config() == m.config() and not m2.training
        x = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(0))
        a = m(x, generator=torch.Generator().manual_seed(1))
        b = m2(x, generator=torch.Generator().manual_seed(1))
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="nope.pth.*does not exist"):
        load_checkpoint(path)


def test_truncated_file(tmp_path):
    path = write(tmp_path / "model.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.pth.*truncated, corrupt"):
        load_checkpoint(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="noise.pth"):
        load_checkpoint(path)


def test_foreign_torch_files(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save(module().state_dict(), plain)  # a bare state dict, like the reference writes
    with pytest.raises(CheckpointError, match="plain.pth.*not an hmmrnn checkpoint"):
        load_checkpoint(plain)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="tensor.pth.*not an hmmrnn checkpoint"):
        load_checkpoint(tensor)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickle.pth"
    torch.save({"format": FORMAT_TAG, "obj": np.random.default_rng(0)}, path)
    with pytest.raises(CheckpointError, match="pickle.pth"):
        load_checkpoint(path)


def test_newer_format_version_refused(tmp_path):
    path = write(tmp_path / "model.pth")
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)


def test_model_from_checkpoint_without_model_config(tmp_path):
    m = module()
    path = save_checkpoint(tmp_path / "m.pth", m.state_dict(), config={"other": 1})
    with pytest.raises(CheckpointError, match="m.pth.*model configuration"):
        model_from_checkpoint(path)
    cfg = {**m.config(), "hidden_size": 9}
    path = save_checkpoint(tmp_path / "w.pth", m.state_dict(), config={"model": cfg})
    with pytest.raises(CheckpointError, match="w.pth.*do not fit"):
        model_from_checkpoint(path)


def test_bad_save_arguments(tmp_path):
    sd = module().state_dict()
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "a.pth", sd, config={"x": object()})
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(tmp_path / "a.pth", {"w": [1, 2]}, config={})
    with pytest.raises(ValueError, match="seed"):
        save_checkpoint(tmp_path / "a.pth", sd, config={}, seed=1.5)
    assert not any(tmp_path.iterdir())
    assert issubclass(CheckpointError, ValueError)
