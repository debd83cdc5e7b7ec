"""The CUDA path: the same code on a GPU (skipped where no CUDA device is present, as in CI).

Run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmmrnn.hmm import HMM, one_hot
from hmmrnn.model import NoiseRNN, generate
from hmmrnn.training import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _module(device="cuda", **kw):
    torch.manual_seed(0)
    return NoiseRNN(input_size=6, hidden_size=16, output_size=3, **kw).to(device)


def test_generate_on_cuda_reproduces_the_training_forward_pass():
    m = _module(rnn_bias=True, readout_bias=True)
    g = torch.Generator(device="cuda").manual_seed(3)
    x = torch.randn((64, 12, 6), generator=g, device="cuda")
    with torch.no_grad():
        out, hidden, _ = m(x, generator=g)
    res = generate(m, 64, 12, generator=torch.Generator(device="cuda").manual_seed(3))
    torch.testing.assert_close(res.hidden, hidden.cpu())
    assert torch.equal(res.outputs, out.cpu())
    assert res.outputs.sum(-1).eq(1).all()


def _data(n=600, t=10):
    hmm = HMM(states=2, outputs=3, emission_method="linear")
    obs, _ = hmm.sample(n, t, rng=0)
    return one_hot(obs[: n // 2], 3), one_hot(obs[n // 2 :], 3)


def test_training_on_cuda_learns_and_its_checkpoint_loads_on_cpu(tmp_path):
    from hmmrnn.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    train, val = _data()
    m = _module()
    trainer = Trainer(m, batch_size=100, epochs=8, learning_rate=0.01, seed=0, device="cuda")
    result = trainer.fit(train, val)
    assert min(result.val_loss) < 0.8 * result.val_loss[0]
    save_checkpoint(tmp_path / "m.pth", result.best_state_dict, config={"model": m.config()})
    cpu = model_from_checkpoint(load_checkpoint(tmp_path / "m.pth"))
    assert next(cpu.parameters()).device.type == "cpu"
    for key, value in cpu.state_dict().items():
        assert torch.equal(value, result.best_state_dict[key].cpu())


def test_resume_on_cuda_continues_from_the_checkpoint(tmp_path):
    train, val = _data()
    kw = dict(batch_size=100, learning_rate=0.01, seed=1, device="cuda", checkpoint_every=1)
    straight = Trainer(_module(), epochs=4, **kw).fit(train, val)
    Trainer(_module(), epochs=2, checkpoint_path=tmp_path / "c.pt", **kw).fit(train, val)
    resumed = Trainer(_module(), epochs=4, checkpoint_path=tmp_path / "c.pt", **kw).fit(train, val)
    # cuDNN's RNN kernels need not be bitwise deterministic; the histories agree closely.
    np.testing.assert_allclose(resumed.val_loss, straight.val_loss, rtol=1e-3)


def test_sinkhorn_matching_on_cuda_equals_cpu():
    from hmmrnn.sinkhorn import Sinkhorn

    hmm = HMM(states=3, outputs=3, emission_method="gaussian")
    a, _ = hmm.sample(400, 20, rng=1)
    b, _ = hmm.sample(400, 20, rng=2)
    x, y = one_hot(a, 3).reshape(400, -1), one_hot(b, 3).reshape(400, -1)
    cpu = Sinkhorn().match(x, y)
    gpu = Sinkhorn(device="cuda").match(x, y)
    np.testing.assert_allclose(gpu.distances, cpu.distances, atol=1e-9)
    assert (gpu.index == cpu.index).mean() > 0.98
