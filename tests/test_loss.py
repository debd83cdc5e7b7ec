"""The fused training loss equals geomloss's Sinkhorn divergence (value and gradient)."""

import geomloss
import pytest
import torch
import torch.nn.functional as F

from hmmrnn.loss import KGramPenalty, SinkhornLoss, _compiled_softmin, switch_pair_rates

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


@pytest.mark.parametrize("n", [8, 300])
@pytest.mark.parametrize("estimator", ["batch", "halves"])
def test_clouds_of_one_point_have_zero_divergence_and_gradient(n, estimator):
    # geomloss's epsilon schedule needs a positive diameter; a model collapsed onto one
    # sequence, or data of a deterministic chain, must not crash training.
    x = torch.zeros(n, 6)
    x[:, ::2] = 1.0
    x.requires_grad_(True)
    value = SinkhornLoss(estimator=estimator)(x, x.detach().clone())
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_one_point_moved_is_not_treated_as_one_point():
    y = torch.zeros(20, 6)
    y[:, ::2] = 1.0
    x = y.clone()
    x[0] = 1.0 - x[0]
    assert SinkhornLoss()(x, y).item() > 0.1


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


def _hmm_clouds(n, seed, seq_len=12):
    """``n`` one-hot sequences (n, seq_len * 3) of a sticky 2-state HMM."""
    from hmmrnn.hmm import HMM, one_hot

    obs = HMM(states=2, outputs=3, stay_prob=0.9).sample(n, seq_len, rng=seed)[0]
    return torch.from_numpy(one_hot(obs, 3)).reshape(n, -1)


def test_halves_is_the_mean_of_transport_costs_between_halves():
    x, y = _hmm_clouds(41, seed=1), _hmm_clouds(30, seed=2)  # x's 41st point is left out
    ot = geomloss.SamplesLoss("sinkhorn", blur=0.2, debias=False)
    x1, x2, y1, y2 = x[:20], x[20:40], y[:15], y[15:]
    expected = (ot(x1, y1) + ot(x1, y2) + ot(x2, y1) + ot(x2, y2)) / 4 - (
        ot(x1, x2) + ot(y1, y2)
    ) / 2
    torch.testing.assert_close(SinkhornLoss(blur=0.2, estimator="halves")(x, y), expected)


def test_halves_is_unbiased_where_the_batch_estimate_is_not():
    """Pairs of independent samples of one HMM: the batch divergence is positive on average,
    the halves estimate averages to zero (within 3 standard errors over 24 pairs)."""
    batch, halves = SinkhornLoss(blur=0.2), SinkhornLoss(blur=0.2, estimator="halves")
    pairs = [(_hmm_clouds(48, 2 * i), _hmm_clouds(48, 2 * i + 1)) for i in range(24)]
    b = torch.stack([batch(x, y) for x, y in pairs])
    h = torch.stack([halves(x, y) for x, y in pairs])
    se = lambda v: (v.std() / len(v) ** 0.5).item()  # noqa: E731
    assert b.mean().item() > 10 * se(b)
    assert abs(h.mean().item()) < 3 * se(h)
    assert (h < 0).any() and (h > 0).any()


@needs_compile
def test_halves_uses_the_fused_kernel_and_agrees_with_geomloss():
    logits, y = _clouds(600, 600)
    x = torch.softmax(logits, dim=-1).reshape(600, -1)
    fused = SinkhornLoss(blur=0.2, estimator="halves")
    plain = SinkhornLoss(blur=0.2, estimator="halves", fused=False)
    assert fused._transport_cost.uses_fused_kernel(x[:300], y[:300])
    torch.testing.assert_close(fused(x, y), plain(x, y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"estimator": "pairs"}, r"estimator must be one of \['batch', 'halves'\] \(got 'pairs'\)"),
        ({"estimator": "halves", "debias": False}, "needs loss 'sinkhorn' with debias=True"),
        ({"estimator": "halves", "loss": "energy"}, "got loss 'energy'"),
    ],
)
def test_estimator_settings_are_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        SinkhornLoss(**kw)


def test_halves_needs_two_points_per_cloud():
    with pytest.raises(ValueError, match="at least 2 points in each cloud.*1 and 4"):
        SinkhornLoss(estimator="halves")(torch.zeros((1, 6)), torch.zeros((4, 6)))


# --------------------------------------------------------------------------- k-gram penalty


def _straight_through(logits):
    soft = torch.softmax(logits, -1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


def _product_form_penalty(out, target, max_k, weight, smoothing):
    """The penalty written with explicit products of one-hot entries (small sizes only)."""

    def windows(y, k):
        n, seq_len, outputs = y.shape
        acc = y[:, : seq_len - k + 1]
        for j in range(1, k):
            nxt = y[:, j : seq_len - k + 1 + j].unsqueeze(2)
            acc = (acc.unsqueeze(-1) * nxt).reshape(n, seq_len - k + 1, -1)
        return acc

    half, value = out.shape[0] // 2, 0.0
    for k in range(1, max_k + 1):
        for first in (None, 1):  # all windows, then the opening window alone
            q = windows(target, k)[:, :first].mean((0, 1))
            f = windows(out, k)[:, :first]
            d1, d2 = f[:half].mean((0, 1)) - q, f[half : 2 * half].mean((0, 1)) - q
            value = value + (d1 * d2 / (q + smoothing)).sum()
    return weight * value


def test_kgram_penalty_hand_computed():
    # Target: always symbol 0, so q = (1, 0) over all windows and over the first;
    # samples: always symbol 1, so f1 = f2 = (0, 1) in both terms.
    target = F.one_hot(torch.zeros((3, 4), dtype=torch.long), 2).float()
    out = F.one_hot(torch.ones((4, 4), dtype=torch.long), 2).float()
    s = 0.01
    got = KGramPenalty(target, max_k=1, weight=2.0, smoothing=s)(out)
    torch.testing.assert_close(got, torch.tensor(2 * 2.0 * (1 / (1 + s) + 1 / s)))
    # Only the opening symbol differs from the data: just the start term is non-zero.
    out[:, 0] = F.one_hot(torch.zeros(4, dtype=torch.long), 2).float()
    target[:, 0] = F.one_hot(torch.ones(3, dtype=torch.long), 2).float()
    got = KGramPenalty(target, max_k=1, weight=1.0, smoothing=s)(out)
    # All windows: q = (3/4, 1/4), f = (1/4, 3/4); the first window: q = (0, 1), f = (1, 0).
    pooled = 0.25 / (0.75 + s) + 0.25 / (0.25 + s)
    torch.testing.assert_close(got, torch.tensor(pooled + 1 / s + 1 / (1 + s)))


def test_kgram_penalty_is_zero_when_both_halves_have_the_data_frequencies():
    target = F.one_hot(torch.randint(0, 3, (6, 9), generator=torch.Generator().manual_seed(0)), 3)
    target = target.float()
    out = torch.cat([target, target]).requires_grad_()
    value = KGramPenalty(target, max_k=4, weight=5.0)(out)
    assert value.item() == 0.0
    (grad,) = torch.autograd.grad(value, out)
    assert torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("n", [10, 11])  # an odd last sequence is left out
def test_kgram_penalty_equals_the_product_form_in_value_and_gradient(n):
    g = torch.Generator().manual_seed(1)
    target = F.one_hot(torch.randint(0, 3, (40, 7), generator=g), 3).float()
    logits = torch.randn((n, 7, 3), generator=g, requires_grad=True)
    got = KGramPenalty(target, max_k=4, weight=2.5, smoothing=1e-3)(_straight_through(logits))
    (g_got,) = torch.autograd.grad(got, logits)
    ref = _product_form_penalty(_straight_through(logits), target, 4, 2.5, 1e-3)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(g_got, g_ref)
    assert g_ref.abs().max() > 0.1


def test_switch_pair_rates_count_switches_at_each_lag():
    # 0 0 1 1 0 2: switches between steps 1-2, 3-4, 4-5 (t = 1, 3, 4 of 5 step pairs).
    y = F.one_hot(torch.tensor([[0, 0, 1, 1, 0, 2], [1, 1, 1, 1, 1, 1]]), 3).float()
    rates = switch_pair_rates(y, 4)
    # lag 1: (3, 4) of 4 pairs; lag 2: (1, 3) of 3; lag 3: (1, 4) of 2; lag 4: none of 1.
    expected = torch.tensor([[1 / 4, 1 / 3, 1 / 2, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(rates, expected)


def test_switch_lags_add_the_chi_square_of_switch_pair_rates():
    # Data never switch (q = 0 at every lag); samples switch at every step (rate 1 in both
    # halves), so each lag adds weight * 1 * 1 / (0 + smoothing).
    target = F.one_hot(torch.zeros((3, 8), dtype=torch.long), 2).float()
    out = F.one_hot(torch.arange(8).remainder(2).expand(4, 8), 2).float()
    s = 0.01
    without = KGramPenalty(target, max_k=2, weight=2.0, smoothing=s)(out)
    with_lags = KGramPenalty(target, max_k=2, weight=2.0, smoothing=s, switch_lags=3)(out)
    torch.testing.assert_close(with_lags - without, torch.tensor(2.0 * 3 / s))


def test_kgram_penalty_gradient_gives_the_change_of_a_one_symbol_flip():
    # Every term is affine in one step's one-hot vector (each product holds a step at most
    # once), so gradient differences are exactly the value changes of flipping that symbol.
    g = torch.Generator().manual_seed(4)
    target = F.one_hot(torch.randint(0, 3, (30, 9), generator=g), 3).double()
    x = torch.randint(0, 3, (10, 9), generator=g)
    pen = KGramPenalty(target, max_k=3, weight=1.5, switch_lags=4)
    out = F.one_hot(x, 3).double().requires_grad_()
    value = pen(out)
    (grad,) = torch.autograd.grad(value, out)
    for i, t, o in [(0, 0, 1), (3, 4, 2), (7, 8, 0), (9, 5, 1), (5, 1, 2)]:
        if x[i, t] == o:
            o = (o + 1) % 3
        flipped = x.clone()
        flipped[i, t] = o
        change = pen(F.one_hot(flipped, 3).double()) - value.detach()
        torch.testing.assert_close(change, grad[i, t, o] - grad[i, t, x[i, t]])


def test_expected_kgram_penalty_is_the_mean_of_the_sampled_one_over_every_outcome():
    # Two sequences of 3 steps with independent per-step probabilities: the 64 outcomes,
    # weighted by their probabilities, average the penalty of one-hot samples to exactly the
    # penalty of the probabilities (every term is multilinear over distinct steps and the
    # halves are independent), in value and in gradient.
    import itertools

    g = torch.Generator().manual_seed(5)
    target = F.one_hot(torch.randint(0, 2, (20, 3), generator=g), 2).double()
    pen = KGramPenalty(target, max_k=3, weight=1.7, smoothing=0.01, switch_lags=1)
    logits = torch.randn((2, 3, 2), generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(logits, -1)
    mean = torch.zeros((), dtype=torch.float64)
    for outcome in itertools.product([0, 1], repeat=6):
        y = F.one_hot(torch.tensor(outcome).reshape(2, 3), 2).double()
        mean = mean + (p * y).sum(-1).prod() * pen(y)
    got = pen(p, probabilities=True)
    torch.testing.assert_close(got, mean)
    (g_got,) = torch.autograd.grad(got, logits, retain_graph=True)
    (g_mean,) = torch.autograd.grad(mean, logits)
    torch.testing.assert_close(g_got, g_mean)
    assert g_mean.abs().max() > 1e-2


def test_expected_kgram_penalty_at_one_hot_values_is_the_sampled_one():
    g = torch.Generator().manual_seed(6)
    target = F.one_hot(torch.randint(0, 3, (40, 8), generator=g), 3).double()
    pen = KGramPenalty(target, max_k=4, weight=2.0, switch_lags=5)
    y = F.one_hot(torch.randint(0, 3, (11, 8), generator=g), 3).double().requires_grad_()
    sampled, expected = pen(y), pen(y, probabilities=True)
    torch.testing.assert_close(expected, sampled)
    (g_sampled,) = torch.autograd.grad(sampled, y)
    (g_expected,) = torch.autograd.grad(expected, y)
    torch.testing.assert_close(g_expected, g_sampled)


def test_kgram_penalty_settings_are_checked():
    target = torch.eye(3)[torch.zeros((4, 5), dtype=torch.long)]
    with pytest.raises(ValueError, match=r"max_k must be an integer from 1 to .* 5 \(got 6\)"):
        KGramPenalty(target, max_k=6)
    with pytest.raises(ValueError, match="smoothing must be > 0"):
        KGramPenalty(target, smoothing=0.0)
    with pytest.raises(ValueError, match=r"weight must be .* \(got -1.0\)"):
        KGramPenalty(target, weight=-1.0)
    wide = torch.eye(40)[torch.zeros((2, 5), dtype=torch.long)]
    with pytest.raises(ValueError, match="40 outputs gives 102400000 k-grams"):
        KGramPenalty(wide, max_k=5)
    pen = KGramPenalty(target, max_k=2)
    with pytest.raises(ValueError, match=r"shape \(n, 5, 3\) like the target \(got \(4, 6, 3\)\)"):
        pen(torch.eye(3)[torch.zeros((4, 6), dtype=torch.long)])
    with pytest.raises(ValueError, match="at least 2 sequences"):
        pen(target[:1])
    with pytest.raises(
        ValueError, match=r"switch_lags must be an integer from 0 .* \(3\) \(got 4\)"
    ):
        KGramPenalty(target, switch_lags=4)
    with pytest.raises(ValueError, match=r"switch_lags .* \(got True\)"):
        KGramPenalty(target, switch_lags=True)
