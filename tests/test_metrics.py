"""Known-answer tests for hmmrnn.metrics."""

import numpy as np
import pytest

from hmmrnn import metrics as M


def cyclic(num_seq=4, seq_len=9, outputs=3):
    offsets = np.arange(num_seq)[:, None]
    return (offsets + np.arange(seq_len)[None, :]) % outputs


def markov_chain(P, num_seq, seq_len, rng):
    """Plain numpy Markov chain sampler (one loop over time), independent of hmmrnn."""
    P = np.asarray(P)
    cum = np.cumsum(P, axis=1)
    obs = np.empty((num_seq, seq_len), dtype=np.int64)
    obs[:, 0] = rng.integers(0, len(P), num_seq)
    for t in range(1, seq_len):
        u = rng.random(num_seq)
        obs[:, t] = (u[:, None] > cum[obs[:, t - 1]]).sum(axis=1)
    return obs


def test_deterministic_chain_transition_matrix_exact():
    obs = cyclic()
    expected = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    np.testing.assert_array_equal(M.transition_matrix(obs, 3), expected)
    counts = M.transition_counts(obs, 3)
    assert counts.sum() == 4 * 8
    np.testing.assert_array_equal(counts, expected * counts.sum(axis=1, keepdims=True))


def test_transition_matrix_by_hand_and_nan_row():
    obs = np.array([[0, 0, 1, 0], [1, 1, 1, 2]])
    # pairs: 00, 01, 10 | 11, 11, 12 ; output 2 never precedes a step -> NaN row
    tm = M.transition_matrix(obs, 3)
    np.testing.assert_allclose(tm[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(tm[1], [1 / 4, 2 / 4, 1 / 4])
    assert np.isnan(tm[2]).all()


def test_sampled_transition_matrix_matches_truth():
    P = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
    obs = markov_chain(P, 400, 200, np.random.default_rng(1))
    tm = M.transition_matrix(obs, 3)
    counts = M.transition_counts(obs, 3).sum(axis=1, keepdims=True)
    # 5 binomial standard errors per entry
    tol = 5 * np.sqrt(P * (1 - P) / counts)
    assert np.all(np.abs(tm - P) < tol), np.abs(tm - P) / tol


def test_volatilities_by_hand():
    obs = np.array([[0, 0, 0, 0], [0, 1, 0, 1], [2, 2, 1, 1]])
    np.testing.assert_array_equal(M.volatilities(obs), [0, 3, 1])
    mean, std = M.volatility_stats(obs)
    assert mean == pytest.approx(4 / 3)
    assert std == pytest.approx(np.std([0, 3, 1]))


def test_frequencies_by_hand():
    obs = np.array([[0, 0, 0, 1], [2, 2, 1, 1]])
    f = M.frequencies(obs, 3)
    np.testing.assert_allclose(f, [[0.75, 0.25, 0.0], [0.0, 0.5, 0.5]])
    np.testing.assert_allclose(f.sum(axis=1), 1.0)
    mean, std = M.frequency_stats(obs, 3)
    np.testing.assert_allclose(mean, [0.375, 0.375, 0.25])
    np.testing.assert_allclose(std, [0.375, 0.125, 0.25])


def test_kgram_distribution_by_hand():
    p = M.kgram_distribution(np.array([[0, 0, 1]]), 3, 2)
    expected = np.zeros(9)
    expected[0] = 0.5  # "00"
    expected[1] = 0.5  # "01"
    np.testing.assert_array_equal(p, expected)
    # first symbol is most significant: "10" is bin 3
    q = M.kgram_distribution(np.array([[1, 0], [0, 1]]), 3, 2)
    np.testing.assert_array_equal(np.nonzero(q)[0], [1, 3])
    # k=1 equals pooled frequencies
    obs = cyclic(3, 7)
    np.testing.assert_allclose(M.kgram_distribution(obs, 3, 1), M.frequencies(obs, 3).mean(axis=0))


def test_kgram_tv_identical_zero_disjoint_one():
    a = cyclic(5, 12)
    assert M.kgram_tv(a, a.copy(), 3, 3) == 0.0
    zeros, twos = np.zeros((3, 6), int), np.full((3, 6), 2)
    for k in (1, 2, 4):
        assert M.kgram_tv(zeros, twos, 3, k) == 1.0
    # half of the mass moved: [[0,0]] vs [[0,1]] at k=1 -> TV 0.5
    assert M.kgram_tv(np.array([[0, 0]]), np.array([[0, 1]]), 2, 1) == 0.5


def test_kgram_tv_profile_structure_and_values():
    a = cyclic(4, 9)  # every output exactly 1/3 of the time
    b = a.copy()
    rnn = np.zeros_like(a)
    prof = M.kgram_tv_profile(rnn, a, b, 3, max_k=3)
    assert list(prof) == [1, 2, 3]
    for k, v in prof.items():
        assert v["floor"] == 0.0
        assert v["rnn"] == pytest.approx(1.0 if k > 1 else 2 / 3)


def test_run_lengths_by_hand():
    obs = np.array([[0, 0, 1, 1, 1, 0], [2, 2, 2, 2, 2, 2]])
    h = M.run_lengths(obs, 3)
    assert set(h) == {0, 1, 2}
    expected0 = np.zeros(7, int)
    expected0[[1, 2]] = 1  # runs "00" and trailing "0" (cut by sequence end)
    np.testing.assert_array_equal(h[0], expected0)
    np.testing.assert_array_equal(np.nonzero(h[1])[0], [3])
    np.testing.assert_array_equal(np.nonzero(h[2])[0], [6])
    # total run length per output equals its count of steps
    for o in range(3):
        assert (h[o] * np.arange(7)).sum() == (obs == o).sum()


def test_run_lengths_do_not_cross_sequences():
    obs = np.array([[1, 1], [1, 1]])
    h = M.run_lengths(obs, 2)
    np.testing.assert_array_equal(h[1], [0, 0, 2])
    np.testing.assert_array_equal(h[0], [0, 0, 0])


def test_run_length_tv():
    a = np.array([[0, 0, 1, 1]])
    np.testing.assert_array_equal(M.run_length_tv(a, a, 3), [0.0, 0.0, 0.0])
    b = np.array([[0, 1, 0, 1]])
    # output 0: a has one run of 2, b two runs of 1 -> disjoint -> 1; output 2 absent -> 0
    np.testing.assert_array_equal(M.run_length_tv(a, b, 3), [1.0, 1.0, 0.0])
    c = np.array([[0, 0, 0, 0]])
    np.testing.assert_array_equal(M.run_length_tv(a, c, 2), [1.0, 1.0])


def test_euclidean_distances_one_hot_equals_sqrt_two_hamming():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (6, 5))
    y = rng.integers(0, 3, (4, 5))
    index = np.array([5, 0, 0, 2])
    eye = np.eye(3)
    d = M.euclidean_distances(eye[x].reshape(6, -1), eye[y].reshape(4, -1), index)
    hamming = (x[index] != y).sum(axis=1)
    np.testing.assert_allclose(d, np.sqrt(2 * hamming))
    np.testing.assert_allclose(M.matched_one_hot_distances(x, y, index, 3), d)
    assert M.matched_one_hot_distances(x, x, np.arange(6)).tolist() == [0.0] * 6


def test_transition_sq_diff():
    p = np.array([[0.5, 0.5], [0.0, 1.0]])
    q = np.array([[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_allclose(M.transition_sq_diff(p, q), [[1 / 16, 1 / 16], [0.25, 0.25]])
    with pytest.raises(ValueError, match="equal shape"):
        M.transition_sq_diff(p, np.eye(3))


class _FakeHMM:
    emission_matrix = np.ones((2, 3)) / 3

    def log_likelihood(self, obs):
        return -np.log(3) * obs.shape[1] * np.ones(len(obs))


def test_mean_loglik_per_step():
    obs = np.zeros((4, 10), int)
    assert M.mean_loglik_per_step(_FakeHMM(), obs) == pytest.approx(-np.log(3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        M.mean_loglik_per_step(_FakeHMM(), obs + 3)


class _BiasedCoin:
    """One state emitting 0 with probability 0.8 and 1 with 0.2: log-likelihoods by hand."""

    emission_matrix = np.array([[0.8, 0.2]])

    def log_likelihood(self, obs):
        return np.where(obs == 0, np.log(0.8), np.log(0.2)).sum(1)


def test_fidelity_score_is_the_worst_measure_in_its_units():
    ref = np.array([[0, 0, 0, 1], [0, 0, 0, 1]])  # log(0.8) * 3/4 + log(0.2) / 4 per step
    score = M.fidelity_score(_BiasedCoin(), ref, max_k=2, tv_target=0.5, loglik_tolerance=1.0)
    assert score(ref) == 0.0
    # All zeros: 1-gram TV 1/4, 2-gram TV 1/3 (ref 2-grams: 00 twice as often as 01), so the
    # k-gram part is (1/3) / 0.5; the log-likelihood is log(4) / 4 too high, in units of 1.
    zeros = np.zeros((3, 4), int)
    assert score(zeros) == pytest.approx(max(2 / 3, np.log(4) / 4))
    # All ones: every 2-gram is 11 (TV 1); the log-likelihood is 3 log(4) / 4 too low.
    assert score(np.ones((1, 4), int)) == pytest.approx(max(1 / 0.5, 3 * np.log(4) / 4))
    tight_ll = M.fidelity_score(_BiasedCoin(), ref, max_k=1, tv_target=1.0, loglik_tolerance=0.01)
    assert tight_ll(zeros) == pytest.approx(np.log(4) / 4 / 0.01)
    with pytest.raises(ValueError, match="seq_len 4 like the reference.*\\(2, 5\\)"):
        score(np.zeros((2, 5), int))
    with pytest.raises(ValueError, match="max_k must be <= seq_len=4"):
        M.fidelity_score(_BiasedCoin(), ref, max_k=5)
    with pytest.raises(ValueError, match="tv_target must be a positive number"):
        M.fidelity_score(_BiasedCoin(), ref, tv_target=0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.volatilities(np.zeros(5, int)), "2-D"),
        (lambda: M.frequencies(np.zeros((2, 3, 3)), 3), "2-D"),
        (lambda: M.frequencies(np.array([[0, 3]]), 3), r"\[0, 3\).*max 3"),
        (lambda: M.transition_matrix(np.array([[-1, 0]]), 3), "min -1"),
        (lambda: M.frequencies(np.array([[0.0, 1.0]]), 3), "integer dtype"),
        (lambda: M.kgram_distribution(np.zeros((2, 3), int), 3, 0), "k must be"),
        (lambda: M.kgram_distribution(np.zeros((2, 3), int), 3, 4), "seq_len=3"),
        (lambda: M.kgram_distribution(np.zeros((2, 30), int), 10, 8), "exceeds"),
        (lambda: M.kgram_tv_profile(*[np.zeros((2, 3), int)] * 3, 3, max_k=0), "max_k"),
        (lambda: M.frequencies(np.zeros((2, 3), int), 0), "outputs"),
        (lambda: M.euclidean_distances(np.eye(3), np.eye(3), [0, 1, 3]), r"\[0, 3\)"),
        (lambda: M.euclidean_distances(np.eye(3), np.eye(3), [0, 1]), "shape"),
        (lambda: M.run_length_tv(np.zeros((1, 3), int), np.zeros((1, 4), int), 2), "seq_len"),
        (lambda: M.volatilities(np.zeros((0, 4), int)), "at least one"),
    ],
)
def test_bad_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
