"""Tests for the user-facing hmmrnn.rnn.RNN wrapper and plot_loss_curves."""

import numpy as np
import pytest
import torch

from hmmrnn._utils import torch_generator
from hmmrnn.checkpoint import CheckpointError, load_checkpoint
from hmmrnn.model import generate
from hmmrnn.rnn import RNN, plot_loss_curves

IN, H, OUT, T = 4, 8, 3, 5


def data(n, seed):
    """Deterministic-looking toy data: each sequence repeats one random symbol."""
    rng = np.random.default_rng(seed)
    obs = np.repeat(rng.integers(0, OUT, n)[:, None], T, axis=1)
    return np.eye(OUT, dtype=np.float32)[obs]


TRAIN, VAL = data(128, 0), data(64, 1)


def small(seed=0, **kw):
    return RNN(input_size=IN, hidden_size=H, output_size=OUT, device="cpu", seed=seed, **kw)


def test_seeded_construction_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = small(0), small(0), small(1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.rnn.weight_hh_l0, b.rnn.weight_hh_l0)
    assert not torch.equal(a.rnn.weight_hh_l0, c.rnn.weight_hh_l0)
    assert small(biased=(True, False)).biased == (True, False)
    assert a.module.rnn.bias is False and (a.input_size, a.hidden_size) == (IN, H)


def test_train_loads_best_weights_and_returns_seed_tuple():
    rnn = small()
    train_losses, val_losses, best_state, best_loss = rnn.train(
        train_seq=TRAIN, val_seq=torch.from_numpy(VAL), batch_size=64, lr=1e-2, epochs=3
    )
    assert len(train_losses) == len(val_losses) == 3
    assert best_loss == min(val_losses)
    for k, v in best_state.items():
        assert torch.equal(rnn.module.state_dict()[k], v)
    assert rnn.train_losses == train_losses and rnn.val_losses == val_losses
    assert rnn.learning_rate == 1e-2


def test_learning_rate_list_runs_a_sweep():
    rnn = small()
    rnn.train(TRAIN, VAL, batch_size=64, lr=[1e-2, 1e-5], epochs=2)
    assert sorted(rnn.results) == [1e-5, 1e-2]
    best = min(rnn.results, key=lambda lr: rnn.results[lr].best_val_loss)
    assert rnn.learning_rate == best
    assert rnn.best_loss == rnn.results[best].best_val_loss
    # Each learning rate started from the same initial weights as a single run would.
    single = small()
    single.train(TRAIN, VAL, batch_size=64, lr=1e-5, epochs=2)
    assert rnn.results[1e-5].val_loss == single.val_losses


def test_custom_criterion_is_used():
    calls = []

    def mse_of_means(x, y):
        calls.append(x.shape)
        return ((x.mean(0) - y.mean(0)) ** 2).sum()

    rnn = small()
    rnn.train(TRAIN, VAL, batch_size=64, epochs=2, criterion=mse_of_means)
    # 2 train + 1 val batches per epoch, on flattened (B, T*O) sequences.
    assert len(calls) == 6 and calls[0] == (64, T * OUT)
    assert max(rnn.val_losses) < 2.0


def test_forward_delegates_to_module():
    rnn = small()
    x = torch.randn(6, T, IN, generator=torch.Generator().manual_seed(0))
    a = rnn(x, generator=torch.Generator().manual_seed(1))
    b = rnn.module(x, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_gen_seq_matches_generate():
    rnn = small()
    out = rnn.gen_seq(T, num_seq=10, seed=3)
    assert set(out) == {"h", "logits", "outs"}
    assert out["h"].shape == (10, T, H) and out["outs"].shape == (10, T, OUT)
    ref = generate(rnn.module, 10, T, generator=torch_generator(3, "cpu"))
    np.testing.assert_array_equal(out["h"], ref.hidden.numpy())
    np.testing.assert_array_equal(out["outs"], ref.outputs.numpy())
    np.testing.assert_array_equal(rnn.gen_seq(T, 10)["outs"], rnn.gen_seq(T, 10, seed=0)["outs"])
    ro = rnn.gen_seq(T, 10, dynamics_mode="recurrence_only", seed=3)
    assert not np.array_equal(ro["h"], out["h"])


def test_save_and_reload(tmp_path):
    rnn = small(seed=5, biased=(True, True))
    rnn.train(TRAIN, VAL, batch_size=64, lr=1e-2, epochs=2)
    path = rnn.save_model(tmp_path / "m.pth", config={"hmm": {"states": 2}})
    ckpt = load_checkpoint(path)
    assert ckpt["config"]["hmm"] == {"states": 2} and ckpt["seed"] == 5
    assert ckpt["config"]["learning_rate"] == 1e-2

    back = RNN.from_checkpoint(path, device="cpu")
    assert back.seed == 5 and back.biased == (True, True)
    assert back.val_losses == rnn.val_losses and back.best_loss == rnn.best_loss
    np.testing.assert_array_equal(back.gen_seq(T, 8)["logits"], rnn.gen_seq(T, 8)["logits"])

    other = small(seed=9, biased=(True, True)).load_model(path)
    for k, v in rnn.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[k], v)


def test_load_model_architecture_mismatch(tmp_path):
    path = small().save_model(tmp_path / "m.pth")
    wrong = RNN(input_size=IN, hidden_size=H + 1, output_size=OUT, device="cpu")
    with pytest.raises(CheckpointError, match=r"m.pth.*hidden_size: checkpoint 8 vs now 9"):
        wrong.load_model(path)
    with pytest.raises(ValueError, match="contradicts"):
        small().save_model(tmp_path / "x.pth", config={"model": {"hidden_size": 3}})


def test_plots_written_atomically(tmp_path):
    rnn = small()
    with pytest.raises(ValueError, match="train the model first"):
        rnn.plot_losses(tmp_path / "none.pdf")
    rnn.train(TRAIN, VAL, batch_size=64, epochs=2)
    pdf = rnn.plot_losses(tmp_path / "figs" / "loss.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    png = plot_loss_curves(
        {"lr=0.01": ([3, 2, 1], [3.5, 2.5, 2.7]), "lr=0.001": ([3, 2.9], [3.4, 3.3])},
        tmp_path / "figs" / "sweep.png",
        title="sweep",
        dpi=50,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["loss.pdf", "sweep.png"]
    with pytest.raises(ValueError, match="suffix"):
        plot_loss_curves([1, 2], [1, 2], tmp_path / "noext")


def test_bad_arguments():
    with pytest.raises(ValueError, match="biased"):
        small(biased=(True,))
    with pytest.raises(ValueError, match="seed"):
        small(seed=1.5)
    with pytest.raises(ValueError, match="hidden_size"):
        RNN(hidden_size=0, device="cpu")
    with pytest.raises(ValueError, match="learning"):
        small().train(TRAIN, VAL, lr=[1e-2, -1.0], epochs=1)
