"""Tests for hmmrnn.sinkhorn against the dense reference and hand-computed answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hmmrnn.sinkhorn import MatchResult, Sinkhorn, match_sequences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference import dense_sinkhorn_match, markov_observations, one_hot_flat  # noqa: E402


def _pair(n, m, seq_len, seed):
    rng = np.random.default_rng(seed)
    x = one_hot_flat(markov_observations(n, seq_len, rng), 3)
    y = one_hot_flat(markov_observations(m, seq_len, rng), 3)
    return x, y


@pytest.mark.parametrize(
    ("n", "m", "seq_len", "seed"), [(300, 300, 50, 0), (300, 250, 20, 1), (250, 300, 100, 2)]
)
def test_agrees_with_dense_reference(n, m, seq_len, seed):
    x, y = _pair(n, m, seq_len, seed)
    ref = dense_sinkhorn_match(x, y)
    ours = Sinkhorn().match(x, y)
    assert ref["converged"] and ours.converged
    # Where the column maximum of the reference plan is clearly unique the match must agree;
    # near-ties may flip between two approximate solutions of the same problem.
    # Identical rows of x tie exactly; compare distinct rows only (first occurrences).
    _, first = np.unique(x, axis=0, return_index=True)
    top2 = np.sort(ref["log_plan"][np.sort(first)], axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 0.1
    assert clear.mean() > 0.8
    np.testing.assert_array_equal(ours.index[clear], ref["index"][clear])
    assert (ours.index == ref["index"]).mean() > 0.99
    same = ours.index == ref["index"]
    np.testing.assert_allclose(ours.distances[same], ref["distances"][same], rtol=1e-12)
    np.testing.assert_allclose(
        ours.distances, np.linalg.norm(x[ours.index].astype(float) - y, axis=1), rtol=1e-12
    )


def _hmm_pair(n, seq_len, seed):
    """Two independent sample sets of the sticky 3-state HMM (the test's realistic inputs)."""
    rng = np.random.default_rng(seed)
    x = one_hot_flat(markov_observations(n, seq_len, rng), 3)
    y = one_hot_flat(markov_observations(n, seq_len, rng, stay_prob=0.9), 3)
    return x, y


@pytest.mark.parametrize("acceleration", ["anderson", "overrelaxation"])
def test_accelerated_modes_agree_with_reference_at_t30(acceleration):
    x, y = _hmm_pair(600, 30, 7)
    ref = dense_sinkhorn_match(x, y)
    ours = Sinkhorn(acceleration=acceleration).match(x, y)
    assert ref["converged"] and ours.converged
    # The accelerated run needs far fewer iterations than the reference's plain ones.
    assert ours.n_iter < 0.6 * ref["n_iter"]
    _, first = np.unique(x, axis=0, return_index=True)
    top2 = np.sort(ref["log_plan"][np.sort(first)], axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 0.1
    assert clear.mean() > 0.8
    np.testing.assert_array_equal(ours.index[clear], ref["index"][clear])
    same = ours.index == ref["index"]
    assert same.mean() > 0.99
    np.testing.assert_allclose(ours.distances[same], ref["distances"][same], rtol=1e-12)


def test_two_pass_fallback_gives_the_same_iterates(monkeypatch):
    """Rows whose one-pass sum leaves the safe range are recomputed; force it for every row."""
    import hmmrnn.sinkhorn as sk

    x, y = _pair(200, 200, 30, 8)
    plain = Sinkhorn(scaling=None, acceleration=None, dtype=torch.float64)
    f1, g1 = plain.potentials(x, y)
    n1 = plain.match(x, y).n_iter
    monkeypatch.setattr(sk, "_SUM_HI", 0.0)
    f2, g2 = plain.potentials(x, y)
    assert plain.match(x, y).n_iter == n1
    np.testing.assert_allclose(f2, f1, atol=1e-9)
    np.testing.assert_allclose(g2, g1, atol=1e-9)


def test_plain_iteration_reproduces_reference_iterates():
    """Without scaling/over-relaxation the iterates are the reference's: same stopping step."""
    x, y = _pair(200, 200, 30, 3)
    ref = dense_sinkhorn_match(x, y)
    for dtype in (torch.float32, torch.float64):
        ours = Sinkhorn(scaling=None, acceleration=None, dtype=dtype)
        res = ours.match(x, y)
        assert res.n_iter == ref["n_iter"]
        np.testing.assert_array_equal(res.index, ref["index"])
    f, g = Sinkhorn(scaling=None, acceleration=None, dtype=torch.float64).potentials(x, y)
    np.testing.assert_allclose(f, ref["f"], atol=1e-9)
    np.testing.assert_allclose(g, ref["g"], atol=1e-9)


def test_self_match_is_identity_with_zero_distance():
    rng = np.random.default_rng(4)
    obs = markov_observations(400, 40, rng)
    obs = np.unique(obs, axis=0)  # distinct rows
    x = one_hot_flat(obs, 3)
    res = Sinkhorn().match(x, x)
    np.testing.assert_array_equal(res.index, np.arange(len(x)))
    np.testing.assert_array_equal(res.distances, 0.0)
    assert res.distinct_fraction == 1.0


def test_hand_example():
    # Sequences over 2 symbols, T = 3. y0 equals x1, y1 equals x0, y2 is one flip from x2 and
    # two flips from x0/x1 -> the assignment is forced; distances are sqrt(2 * Hamming).
    obs_x = np.array([[0, 0, 0], [1, 1, 1], [0, 1, 0]])
    obs_y = np.array([[1, 1, 1], [0, 0, 0], [0, 1, 1]])
    res = match_sequences(obs_x, obs_y, outputs=2)
    assert isinstance(res, MatchResult)
    np.testing.assert_array_equal(res.index, [1, 0, 2])
    np.testing.assert_allclose(res.distances, [0.0, 0.0, np.sqrt(2.0)])
    assert res.distinct_fraction == 1.0
    assert res.index.dtype == np.int64 and res.distances.dtype == np.float64


def test_duplicates_match_first_occurrence_and_are_exact():
    """Merging identical rows must not change the problem: compare with the dense reference."""
    rng = np.random.default_rng(5)
    base = markov_observations(60, 8, rng)
    obs_x = base[rng.integers(0, 60, 300)]  # many exact duplicates
    obs_y = markov_observations(250, 8, rng)
    x, y = one_hot_flat(obs_x, 3), one_hot_flat(obs_y, 3)
    ref = dense_sinkhorn_match(x, y)
    res = Sinkhorn(scaling=None, acceleration=None, dtype=torch.float64).match(x, y)
    assert res.n_iter == ref["n_iter"]
    np.testing.assert_array_equal(res.index, ref["index"])
    # Returned indices are first occurrences of their row.
    first = {tuple(r): i for i, r in reversed(list(enumerate(obs_x.tolist())))}
    assert all(first[tuple(obs_x[i])] == i for i in res.index)


def test_torch_input_and_block_size_do_not_change_result():
    x, y = _pair(150, 120, 25, 6)
    a = Sinkhorn().match(x, y)
    b = Sinkhorn(block_size=7).match(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_array_equal(a.index, b.index)
    assert a.n_iter == b.n_iter


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.zeros(5), np.zeros((2, 5)), r"x must be 2-D .*\(5,\)"),
        (np.zeros((0, 4)), np.zeros((2, 4)), r"non-empty .*\(0, 4\)"),
        (np.zeros((3, 4)), np.zeros((2, 5)), r"same number of columns .*\(3, 4\).*\(2, 5\)"),
        (np.full((3, 4), np.nan), np.zeros((2, 4)), "finite"),
        (np.full((3, 4), 0.5), np.zeros((2, 4)), "0 or 1"),
    ],
)
def test_input_validation(x, y, match):
    with pytest.raises(ValueError, match=match):
        Sinkhorn().match(x, y)


def test_constructor_and_sequence_validation():
    with pytest.raises(ValueError, match="epsilon"):
        Sinkhorn(epsilon=0)
    with pytest.raises(ValueError, match="overrelaxation"):
        Sinkhorn(overrelaxation=2.0)
    with pytest.raises(ValueError, match="acceleration must be .*'newton'"):
        Sinkhorn(acceleration="newton")
    with pytest.raises(ValueError, match="anderson_memory"):
        Sinkhorn(anderson_memory=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        match_sequences(np.array([[0, 3]]), np.array([[0, 1]]), outputs=3)
    with pytest.raises(ValueError, match="same length"):
        match_sequences(np.array([[0, 1]]), np.array([[0, 1, 2]]), outputs=3)
