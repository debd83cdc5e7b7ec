"""Known-answer tests for hmmrnn.model: NoiseRNN.forward and generate."""

import numpy as np
import pytest
import torch

from hmmrnn.model import DYNAMICS_MODES, NoiseRNN, generate, sample_outputs

IN, H, OUT, N, T = 4, 8, 3, 64, 5


def make(seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"input_size": IN, "hidden_size": H, "output_size": OUT, **kw}
    return NoiseRNN(**kw)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_forward_shapes_and_exact_one_hot():
    m = make()
    x = torch.randn(N, T, IN, generator=gen(1))
    out, hidden, logits = m(x, generator=gen(2))
    assert out.shape == (N, T, OUT) and logits.shape == (N, T, OUT) and hidden.shape == (N, T, H)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.sum(-1), torch.ones(N, T))
    assert torch.equal(hidden, torch.relu(hidden))


def test_softmax_outputs_without_gumbel():
    m = make(readout_bias=True)
    x = torch.randn(N, T, IN, generator=gen(1))
    out, _, logits = m(x, tau=0.5, gumbel=False, generator=gen(2))
    torch.testing.assert_close(out.sum(-1), torch.ones(N, T))
    torch.testing.assert_close(out, torch.softmax(logits / 0.5, dim=-1))


def test_init_false_starts_from_zero_state():
    m = make(rnn_bias=True)
    x = torch.randn(N, T, IN, generator=gen(1))
    _, hidden, _ = m(x, init=False, generator=gen(2))
    r = m.rnn
    expected = torch.relu(x[:, 0] @ r.weight_ih_l0.T + r.bias_ih_l0 + r.bias_hh_l0)
    torch.testing.assert_close(hidden[:, 0], expected, rtol=0, atol=1e-6)


def test_explicit_h0_wins_over_init():
    m = make(rnn_bias=True)
    x = torch.randn(N, T, IN, generator=gen(1))
    h0 = torch.randn(1, N, H, generator=gen(3))
    _, hidden, _ = m(x, init=True, h0=h0, generator=gen(2))
    r = m.rnn
    pre = x[:, 0] @ r.weight_ih_l0.T + r.bias_ih_l0 + h0[0] @ r.weight_hh_l0.T + r.bias_hh_l0
    torch.testing.assert_close(hidden[:, 0], torch.relu(pre), rtol=0, atol=1e-6)
    # With init=True and no h0 the first state differs (random initial state).
    _, hidden_rand, _ = m(x, init=True, generator=gen(2))
    assert not torch.equal(hidden_rand[:, 0], hidden[:, 0])


def test_same_generator_same_samples():
    m = make()
    x = torch.randn(N, T, IN, generator=gen(1))
    a = m(x, generator=gen(5))[0]
    b = m(x, generator=gen(5))[0]
    c = m(x, generator=gen(6))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gumbel_frequencies_match_softmax():
    logits = torch.tensor([1.0, 0.0, -1.0]).repeat(40000, 1)
    out = sample_outputs(logits, tau=1.0, gumbel=True, generator=gen(0))
    freq = out.mean(0)
    expected = torch.softmax(torch.tensor([1.0, 0.0, -1.0]), 0)
    # Binomial standard error is <= 0.0025 here; 0.01 is four of them.
    torch.testing.assert_close(freq, expected, rtol=0, atol=0.01)


def test_straight_through_gradient_reaches_weights():
    m = make()
    x = torch.randn(N, T, IN, generator=gen(1))
    out, _, _ = m(x, generator=gen(2))
    (out * torch.arange(OUT, dtype=torch.float32)).sum().backward()
    assert m.fc.weight.grad.abs().sum() > 0
    assert m.rnn.weight_hh_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_generate_full_equals_forward_bit_for_bit(num_layers, tau):
    m = make(num_layers=num_layers, rnn_bias=True, readout_bias=True)
    g = gen(7)
    x = torch.randn((N, T, IN), generator=g)
    out, hidden, logits = m(x, tau=tau, generator=g)
    res = generate(m, N, T, tau=tau, generator=gen(7), return_inputs=True)
    assert torch.equal(res.inputs, x)
    assert torch.equal(res.hidden, hidden)
    assert torch.equal(res.logits, logits)
    assert torch.equal(res.outputs, out)
    assert res.observations.dtype == np.int64 and res.observations.shape == (N, T)
    np.testing.assert_array_equal(res.observations, out.argmax(-1).numpy())


def test_generate_chunks_follow_forward_per_chunk():
    m = make()
    g = gen(3)
    outs, hids = [], []
    for n in (24, 24, 16):
        x = torch.randn((n, T, IN), generator=g)
        o, h, _ = m(x, generator=g)
        outs.append(o)
        hids.append(h)
    res = generate(m, N, T, generator=gen(3), batch_size=24)
    assert torch.equal(res.outputs, torch.cat(outs).detach())
    assert torch.equal(res.hidden, torch.cat(hids).detach())


def test_generate_init_false_and_softmax():
    m = make(rnn_bias=True)
    g = gen(4)
    x = torch.randn((N, T, IN), generator=g)
    out, hidden, _ = m(x, tau=2.0, init=False, gumbel=False, generator=g)
    res = generate(m, N, T, tau=2.0, init=False, gumbel=False, generator=gen(4))
    assert torch.equal(res.hidden, hidden)
    assert torch.equal(res.outputs, out)
    torch.testing.assert_close(res.outputs, torch.softmax(res.logits / 2.0, -1))


def test_recurrence_only_is_zero_input_recurrence():
    m = make(rnn_bias=True, readout_bias=True)
    g = gen(9)
    torch.randn((N, T, IN), generator=g)  # the (unused) noise is still drawn first
    h = torch.randn((1, N, H), generator=g)[0]
    r = m.rnn
    expected = []
    with torch.no_grad():
        for _ in range(T):
            h = torch.relu(r.bias_ih_l0 + h @ r.weight_hh_l0.T + r.bias_hh_l0)
            expected.append(h)
    expected = torch.stack(expected, 1)
    res = generate(m, N, T, dynamics_mode="recurrence_only", generator=gen(9))
    torch.testing.assert_close(res.hidden, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(res.logits, m.fc(res.hidden))


def test_input_only_replaces_the_recurrent_weights_by_the_identity():
    m = make(rnn_bias=True)
    g = gen(11)
    x = torch.randn((N, T, IN), generator=g)
    h = m.initial_state(N, True, g)[0]
    r = m.rnn
    expected = []
    with torch.no_grad():
        for t in range(T):  # the paper's loop, written out by hand
            h = torch.relu(x[:, t] @ r.weight_ih_l0.T + r.bias_ih_l0 + h + r.bias_hh_l0)
            expected.append(h)
    res = generate(m, N, T, dynamics_mode="input_only", generator=gen(11))
    torch.testing.assert_close(res.hidden, torch.stack(expected, dim=1), rtol=1e-5, atol=1e-5)
    # The module's own recurrent weights are untouched.
    assert not torch.equal(r.weight_hh_l0, torch.eye(r.weight_hh_l0.shape[0]))


def test_modes_share_noise_and_differ_in_dynamics():
    m = make()
    hid = {
        mode: generate(m, N, T, dynamics_mode=mode, generator=gen(0)).hidden
        for mode in DYNAMICS_MODES
    }
    assert not torch.equal(hid["full"], hid["recurrence_only"])
    assert not torch.equal(hid["full"], hid["input_only"])


def test_generate_leaves_training_mode_and_grad_untouched():
    m = make()
    m.train()
    res = generate(m, 4, T, generator=gen(0))
    assert m.training
    assert not res.outputs.requires_grad and res.outputs.device.type == "cpu"
    assert generate(m, 4, T, generator=gen(0), return_hidden=False).hidden is None


def test_bad_arguments_raise_value_error():
    m = make()
    with pytest.raises(ValueError, match="shape"):
        m(torch.zeros(N, T, IN + 1))
    with pytest.raises(ValueError, match="shape"):
        m(torch.zeros(T, IN))
    with pytest.raises(ValueError, match="tau"):
        m(torch.zeros(N, T, IN), tau=0.0)
    with pytest.raises(ValueError, match="tau"):
        m(torch.zeros(N, T, IN), tau=float("nan"))
    with pytest.raises(ValueError, match="h0"):
        m(torch.zeros(N, T, IN), h0=torch.zeros(1, N, H + 1))
    with pytest.raises(ValueError, match="hidden_size"):
        NoiseRNN(IN, 0)
    with pytest.raises(ValueError, match="rnn_bias"):
        NoiseRNN(IN, H, rnn_bias="yes")
    with pytest.raises(ValueError, match="'full', 'recurrence_only', 'input_only'"):
        generate(m, N, T, dynamics_mode="bogus")
    with pytest.raises(ValueError, match="num_seq"):
        generate(m, 0, T)
    with pytest.raises(ValueError, match="batch_size"):
        generate(m, N, T, batch_size=-1)


def test_config_rebuilds_module():
    m = make(num_layers=2, rnn_bias=True)
    m2 = NoiseRNN(**m.config())
    assert m2.config() == m.config()
    assert {k: v.shape for k, v in m2.state_dict().items()} == {
        k: v.shape for k, v in m.state_dict().items()
    }
