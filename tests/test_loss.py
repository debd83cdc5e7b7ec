"""The fused training loss equals geomloss's Sinkhorn divergence (value and gradient)."""

import geomloss
import pytest
import torch
import torch.nn.functional as F

from hmmrnn.loss import SinkhornLoss, _compiled_softmin

needs_compile = pytest.mark.skipif(
    _compiled_softmin() is None, reason="torch.compile does not work on this machine"
)


def _clouds(n, m, seq_len=30, outputs=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((n, seq_len, outputs), generator=g, requires_grad=True)
    y = F.one_hot(torch.randint(0, outputs, (m, seq_len), generator=g), outputs).float()
    return logits, y.reshape(m, -1)


def _value_and_grad(criterion, logits, y):
    # A soft (differentiable) cloud: the gradient reaches every coordinate.
    x = torch.softmax(logits, dim=-1).reshape(logits.shape[0], -1)
    value = criterion(x, y)
    (grad,) = torch.autograd.grad(value, logits)
    return value.detach(), grad


@needs_compile
@pytest.mark.parametrize(("n", "m", "p", "debias"), [(300, 300, 2, True), (260, 400, 1, False)])
def test_fused_equals_geomloss(n, m, p, debias):
    logits, y = _clouds(n, m)
    fused = SinkhornLoss(p=p, blur=0.2, scaling=0.5, debias=debias)
    assert fused.uses_fused_kernel(logits.reshape(n, -1), y)
    reference = geomloss.SamplesLoss("sinkhorn", p=p, blur=0.2, scaling=0.5, debias=debias)
    v_fused, g_fused = _value_and_grad(fused, logits, y)
    v_ref, g_ref = _value_and_grad(reference, logits, y)
    torch.testing.assert_close(v_fused, v_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-3, atol=1e-4 * g_ref.abs().max().item())


@needs_compile
def test_identical_clouds_have_zero_divergence():
    _, y = _clouds(300, 300)
    value = SinkhornLoss(blur=0.2)(y.clone(), y)
    assert abs(value.item()) < 1e-4


@needs_compile
def test_fused_is_deterministic():
    logits, y = _clouds(300, 300, seed=3)
    loss = SinkhornLoss(blur=0.2)
    v1, g1 = _value_and_grad(loss, logits, y)
    v2, g2 = _value_and_grad(loss, logits, y)
    assert torch.equal(v1, v2) and torch.equal(g1, g2)


def test_small_or_unfused_calls_geomloss():
    logits, y = _clouds(20, 20)
    x = torch.softmax(logits, -1).reshape(20, -1)
    assert not SinkhornLoss(blur=0.2).uses_fused_kernel(x, y)  # too few pairs to pay off
    big_x, big_y = torch.zeros((300, 6)), torch.zeros((300, 6))
    assert not SinkhornLoss(blur=0.2, fused=False).uses_fused_kernel(big_x, big_y)
    assert not SinkhornLoss("energy").uses_fused_kernel(big_x, big_y)
    reference = geomloss.SamplesLoss("sinkhorn", blur=0.2)
    assert torch.equal(SinkhornLoss(blur=0.2)(x, y), reference(x, y))


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(N, D\) and \(M, D\).*\(4, 6\) and \(4, 5\)"):
        SinkhornLoss()(torch.zeros((4, 6)), torch.zeros((4, 5)))


@needs_compile
def test_trainer_with_fused_loss_is_reproducible_and_matches_geomloss():
    from hmmrnn.hmm import HMM, one_hot
    from hmmrnn.model import NoiseRNN
    from hmmrnn.training import Trainer

    data = torch.from_numpy(one_hot(HMM(states=2, outputs=3).sample(600, 12, rng=0)[0], 3))

    def fit(fused):
        torch.manual_seed(0)
        module = NoiseRNN(4, 8, output_size=3)
        trainer = Trainer(
            module, batch_size=300, epochs=2, learning_rate=1e-2, seed=1, fused_loss=fused
        )
        assert (
            trainer.make_criterion().uses_fused_kernel(data[:300].flatten(1), data[:300].flatten(1))
            == fused
        )
        result = trainer.fit(data[:600], data[:300])
        return result, module.state_dict()

    first, weights = fit(True)
    again, weights_again = fit(True)
    assert first.train_loss == again.train_loss
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)
    unfused, _ = fit(False)
    # One Adam step from the same start: the first epoch's losses agree to float rounding.
    assert first.train_loss[0] == pytest.approx(unfused.train_loss[0], rel=1e-5)
