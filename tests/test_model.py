"""Known-answer tests for hmmrnn.model: NoiseRNN.forward and generate."""

import numpy as np
import pytest
import torch

from hmmrnn import model
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


# ------------------------------------------------------------------ the blocked recurrence

MODES_GRID = [
    (layers, bias, mode, init)
    for layers in (1, 2)
    for bias in (False, True)
    for mode in DYNAMICS_MODES
    for init in (True, False)
]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 8 sequences and two torch threads: several blocks per chunk, worker threads."""
    monkeypatch.setattr(model, "_BLOCK_SEQ", 8)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def hand_loop(m, x, h0, mode="full"):
    """The recurrence written out step by step (layer by layer within a step)."""
    r = m.rnn
    h = [h0[i] for i in range(m.num_layers)]
    hidden = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            inp = x[:, t]
            for i in range(m.num_layers):
                w_ih, w_hh = getattr(r, f"weight_ih_l{i}"), getattr(r, f"weight_hh_l{i}")
                if mode == "recurrence_only" and i == 0:
                    inp = torch.zeros_like(inp)
                rec = h[i] if mode == "input_only" else h[i] @ w_hh.T
                pre = inp @ w_ih.T + rec
                if m.rnn_bias:
                    pre = pre + getattr(r, f"bias_ih_l{i}") + getattr(r, f"bias_hh_l{i}")
                h[i] = inp = torch.relu(pre)
            hidden.append(inp)
    hidden = torch.stack(hidden, 1)
    return hidden, m.fc(hidden).detach()


@pytest.mark.parametrize(("layers", "bias"), [(1, False), (1, True), (2, True)])
def test_forward_matches_hand_loop_and_torch_rnn(small_blocks, layers, bias):
    m = make(num_layers=layers, rnn_bias=bias, readout_bias=bias)
    x = torch.randn(40, T, IN, generator=gen(1))
    h0 = torch.randn(layers, 40, H, generator=gen(2))
    _, hidden, logits = m(x, h0=h0, generator=gen(3))
    expected, expected_logits = hand_loop(m, x, h0)
    torch.testing.assert_close(hidden.detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits.detach(), expected_logits, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the parameters are still an nn.RNN's: same function as before
        torch.testing.assert_close(m.rnn(x, h0)[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", DYNAMICS_MODES)
def test_generate_modes_match_hand_loop(small_blocks, mode):
    m = make(num_layers=2, rnn_bias=True)
    g = gen(5)
    x = torch.randn((40, T, IN), generator=g)
    h0 = m.initial_state(40, True, g)
    expected, expected_logits = hand_loop(m, x, h0, mode)
    res = generate(m, 40, T, dynamics_mode=mode, generator=gen(5))
    torch.testing.assert_close(res.hidden, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.logits, expected_logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("layers", "bias", "mode", "init"), MODES_GRID)
def test_autograd_path_equals_generate_bit_for_bit(small_blocks, layers, bias, mode, init):
    """The out-of-place (autograd) recurrence and generate's in-place one, all modes."""
    m = make(num_layers=layers, rnn_bias=bias, readout_bias=bias)
    n, tau = 44, 0.7  # 6 blocks
    g = gen(13)
    x = torch.randn((n, T, IN), generator=g)
    h0 = m.initial_state(n, init, g)
    w = model._weights(m, mode)
    blocks = model._seq_blocks(x)
    assert len(blocks) == 6
    parts = [model._block_autograd(w, x[a:b], h0[:, a:b]) for a, b in blocks]
    hidden = torch.cat([p[0] for p in parts])
    logits = torch.cat([p[1] for p in parts])
    assert hidden.requires_grad  # this is the autograd path
    out = sample_outputs(logits, tau, True, g)
    res = generate(m, n, T, tau=tau, init=init, dynamics_mode=mode, generator=gen(13))
    assert torch.equal(res.hidden, hidden.detach())
    assert torch.equal(res.logits, logits.detach())
    assert torch.equal(res.outputs, out.detach())
    np.testing.assert_array_equal(res.observations, out.argmax(-1).numpy())


@pytest.mark.parametrize("layers", [1, 2])
def test_forward_with_and_without_autograd_agree(small_blocks, layers):
    m = make(num_layers=layers, rnn_bias=True, readout_bias=True)
    x = torch.randn(44, T, IN, generator=gen(1))
    out_grad, hidden_grad, logits_grad = m(x, generator=gen(2))
    assert hidden_grad.requires_grad
    with torch.no_grad():
        out, hidden, logits = m(x, generator=gen(2))
    assert torch.equal(hidden, hidden_grad.detach())
    assert torch.equal(logits, logits_grad.detach())
    assert torch.equal(out, out_grad.detach())


def test_input_only_is_the_full_dynamics_with_identity_weights(small_blocks):
    m = make(rnn_bias=True)
    identity = make(rnn_bias=True)
    with torch.no_grad():
        identity.rnn.weight_hh_l0.copy_(torch.eye(H))
    a = generate(m, 40, T, dynamics_mode="input_only", generator=gen(4))
    b = generate(identity, 40, T, generator=gen(4))
    # h @ I is h exactly, so adding h instead of multiplying by I changes nothing.
    assert torch.equal(a.hidden, b.hidden)
    assert torch.equal(a.outputs, b.outputs)


def test_generate_does_not_depend_on_threads_or_what_is_kept(monkeypatch):
    """Worker threads or not, hidden states kept (noise drawn block by block) or not."""
    monkeypatch.setattr(model, "_BLOCK_SEQ", 8)
    m = make(rnn_bias=True, readout_bias=True)
    projected = []
    real = model._project_block
    monkeypatch.setattr(model, "_project_block", lambda *a: projected.append(1) or real(*a))
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads, keep, batch in [
            (1, True, 30),
            (2, True, 30),
            (2, False, 30),
            (2, True, None),
        ]:
            torch.set_num_threads(n_threads)
            res = generate(
                m,
                100,
                T,
                generator=gen(8),
                batch_size=batch,
                return_hidden=keep,
                return_inputs=batch is None,
            )
            results.append((res, batch))
    finally:
        torch.set_num_threads(threads)
    assert projected  # the block-by-block draws were exercised
    (ref, _), *others = results
    for res, batch in others:
        if batch == 30:
            assert torch.equal(res.outputs, ref.outputs)
            assert torch.equal(res.logits, ref.logits)
            np.testing.assert_array_equal(res.observations, ref.observations)
            assert res.hidden is None or torch.equal(res.hidden, ref.hidden)
    # One chunk, noise drawn block by block: the same noise as one draw.
    whole = torch.randn((100, T, IN), generator=gen(8))
    assert torch.equal(results[-1][0].inputs, whole)


def test_generate_equals_forward_at_thread_split_sizes():
    """Large enough that elementwise kernels split their work between threads."""
    m = make(readout_bias=True)
    n, steps = 1328, 30  # 1328 * 30 * 3 = 119520 Gumbel values: split at 59760 by 2 threads
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = gen(21)
        x = torch.randn((n, steps, IN), generator=g)
        out, hidden, logits = m(x, generator=g)
        res = generate(m, n, steps, generator=gen(21), return_hidden=False)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(res.logits, logits.detach())
    assert torch.equal(res.outputs, out.detach())
    assert hidden.shape == (n, steps, H)


def test_every_path_gives_training_logits_at_paper_size():
    """Kept (strided) hidden states once rounded the readout differently at H = 150 (1 ulp).

    1100 sequences make several blocks, so that generate() also projects the noise ahead.
    """
    torch.manual_seed(0)
    m = NoiseRNN(100, 150, output_size=3)
    n, steps = 1100, 3
    assert len(model._blocks(n, model._quantum(steps * 100))) > 1
    g = gen(21)
    out, hidden, logits = m(torch.randn((n, steps, 100), generator=g), generator=g)
    with torch.no_grad():
        g = gen(21)
        _, hidden_ng, logits_ng = m(torch.randn((n, steps, 100), generator=g), generator=g)
    assert torch.equal(logits_ng, logits.detach())
    assert torch.equal(hidden_ng, hidden.detach())
    for keep in (True, False):
        res = generate(m, n, steps, generator=gen(21), return_hidden=keep)
        assert torch.equal(res.logits, logits.detach())
        assert torch.equal(res.outputs, out.detach())
        assert res.hidden is None or torch.equal(res.hidden, hidden.detach())


def test_large_buffers_are_writable_tensors_of_the_asked_type():
    for dtype in (torch.float32, torch.float64, torch.int64, torch.bfloat16):
        buf = model._empty_cpu((3, 2_000_000), dtype)  # 4 MB and more: numpy's huge pages
        assert buf.shape == (3, 2_000_000) and buf.dtype == dtype and buf.is_contiguous()
        buf[2, -1] = 7
        assert buf[2, -1].item() == 7


def test_blocks_partition():
    for n, quantum in [(4096, 2), (1328, 2), (30000, 2), (64, 4), (5, 4), (3, 4), (513, 1)]:
        blocks = model._blocks(n, quantum)
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
        assert all((b - a) % quantum == 0 for a, b in blocks[:-1])
        assert len(blocks) == 1 or len(blocks) % 2 == 0
        assert max(b - a for a, b in blocks) <= model._BLOCK_SEQ + 2 * quantum
    assert model._quantum(30 * 100) == 2 and model._quantum(5 * 4) == 4


def test_split_normal_draws_equal_one_draw():
    # What the block-by-block drawing relies on (checked at run time too).
    assert model._split_draws_ok(torch.float32)
    g1, g2 = gen(3), gen(3)
    whole = torch.randn((10, T, IN), generator=g1)
    split = torch.empty_like(whole)
    for a, b in [(0, 4), (4, 8), (8, 10)]:  # 4 * 5 * 4 = 80 values: multiples of 16
        split[a:b].normal_(generator=g2)
    assert torch.equal(whole, split)
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))


def test_generate_propagates_errors_and_restores_threads(monkeypatch):
    m = make()
    threads = torch.get_num_threads()

    def boom(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "_block_inplace", boom)
    with pytest.raises(RuntimeError, match="boom"):
        generate(m, 20, T, generator=gen(0))
    assert torch.get_num_threads() == threads
