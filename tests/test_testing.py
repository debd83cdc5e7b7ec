"""Tests for hmmrnn.testing: compare(), Test and the TestResults JSON + parquet round trip."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from hmmrnn import metrics
from hmmrnn.hmm import HMM
from hmmrnn.testing import TEST, Test, TestResults, compare


def nearest_matcher(obs_x, obs_y):
    """Stand-in matcher: each row of obs_y to its Hamming-nearest row of obs_x (first on ties)."""
    ham = (obs_x[None, :, :] != obs_y[:, None, :]).sum(axis=2)
    index = ham.argmin(axis=1)
    return SimpleNamespace(
        index=index,
        distinct_fraction=len(np.unique(index)) / len(obs_y),
        n_iter=0,
        converged=True,
    )


def cyclic(num_seq, seq_len, outputs=3):
    return (np.arange(num_seq)[:, None] + np.arange(seq_len)[None, :]) % outputs


@pytest.fixture(scope="module")
def hmm():
    return HMM(states=3, outputs=3, stay_prob=0.9, emission_method="linear")


@pytest.fixture(scope="module")
def samples(hmm):
    a, _ = hmm.sample(60, 20, rng=1)
    b, _ = hmm.sample(60, 20, rng=2)
    return a, b


def test_identical_sets_give_zero_everything(hmm, samples):
    a, _ = samples
    res = compare(hmm, a, a.copy(), a.copy(), matcher=nearest_matcher, max_kgram=3)
    assert res.outputs == 3
    np.testing.assert_array_equal(res.distances_hmm, 0.0)
    np.testing.assert_array_equal(res.distances_rnn, 0.0)
    assert res.euclidean_gap == 0.0
    assert res.euclidean_gap_se == 0.0
    assert res.kgram_tv == {k: {"rnn": 0.0, "floor": 0.0} for k in (1, 2, 3)}
    np.testing.assert_array_equal(res.run_length_tv_rnn, 0.0)
    np.testing.assert_array_equal(res.transition_sq_diff, 0.0)
    assert res.loglik_per_step_rnn == res.loglik_per_step_hmm
    assert res.loglik_per_step_hmm == pytest.approx(hmm.log_likelihood(a).mean() / 20)
    s = res.summary()
    assert s["transition_sq_diff_max"] == 0.0
    assert s["loglik_per_step_gap"] == 0.0


def test_known_distances_and_statistics():
    a = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    b = np.array([[0, 0, 0, 1], [1, 1, 1, 1]])  # Hamming 1 and 0 to A
    rnn = np.array([[0, 1, 0, 1], [2, 2, 2, 2]])  # Hamming 2 and 4, both matched to A[0]
    res = compare(None, a, b, rnn, outputs=3, matcher=nearest_matcher, max_kgram=2)
    np.testing.assert_allclose(res.distances_hmm, [math.sqrt(2), 0.0])
    np.testing.assert_allclose(res.distances_rnn, [2.0, math.sqrt(8)])
    base = math.sqrt(2) / 2
    assert res.euclidean_gap == pytest.approx(((2 + math.sqrt(8)) / 2 - base) / base)
    # var_rnn = (sqrt 8 - 2)^2 / 2, var_hmm = 1, ratio of means 2 + sqrt 2:
    # sqrt(var_rnn / 2 + ratio^2 * var_hmm / 2) / base = sqrt(6) / (1 / sqrt 2) = 2 sqrt 3.
    assert res.euclidean_gap_se == pytest.approx(2 * math.sqrt(3))
    assert res.summary()["euclidean_gap_se"] == pytest.approx(2 * math.sqrt(3))
    np.testing.assert_array_equal(res.volatilities_hmm, [0, 0])
    np.testing.assert_array_equal(res.volatilities_rnn, [3, 0])
    np.testing.assert_allclose(res.frequencies_rnn, [[0.5, 0.5, 0], [0, 0, 1]])
    np.testing.assert_allclose(res.transition_rnn, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert np.isnan(res.transition_hmm[2]).all()  # output 2 never occurs in set A
    assert res.match_rnn == {"distinct_fraction": 0.5, "n_iter": 0, "converged": True}
    assert res.loglik_per_step_hmm is None
    # k=1: A = {0: .5, 1: .5}; RNN = {0: .25, 1: .25, 2: .5} -> TV .5
    assert res.kgram_tv[1]["rnn"] == 0.5
    assert res.kgram_tv[1]["floor"] == pytest.approx(0.125)
    np.testing.assert_array_equal(res.run_length_hist_rnn[2], [0, 0, 0, 0, 1])


def test_gap_standard_error_matches_the_spread_of_exact_hmm_gaps(hmm):
    # An independent HMM set in place of the RNN: the gap is pure sampling noise, so its
    # spread over many draws is what the standard error must predict (measured: 1.01-1.07
    # times it over three seeds; with Sinkhorn matching 1.01).
    rng = np.random.default_rng(7)
    gaps, errors = [], []
    for _ in range(60):
        a, b, c = (hmm.sample(200, 12, rng)[0] for _ in range(3))
        res = compare(None, a, b, c, outputs=3, matcher=nearest_matcher, max_kgram=1)
        gaps.append(res.euclidean_gap)
        errors.append(res.euclidean_gap_se)
    ratio = np.std(gaps, ddof=1) / np.median(errors)
    assert 0.75 < ratio < 1.3, ratio
    assert abs(np.mean(gaps)) < 3 * np.median(errors) / math.sqrt(len(gaps))


def test_gap_standard_error_needs_two_distances():
    a = np.array([[0, 1, 0]])
    res = compare(None, a, a, a, outputs=2, matcher=nearest_matcher, max_kgram=1)
    assert math.isnan(res.euclidean_gap_se)
    assert res.to_dict()["summary"]["euclidean_gap_se"] is None


def test_mismatched_lengths_and_values_raise(samples):
    a, b = samples
    with pytest.raises(ValueError, match="same seq_len"):
        compare(None, a, b, a[:, :10], outputs=3, matcher=nearest_matcher)
    with pytest.raises(ValueError, match=r"obs_rnn values must lie in \[0, 3\)"):
        compare(None, a, b, a + 1, outputs=3, matcher=nearest_matcher)
    with pytest.raises(ValueError, match="outputs must be given"):
        compare(None, a, b, a, matcher=nearest_matcher)
    with pytest.raises(ValueError, match="num_seq"):
        Test(None, None, num_seq=0, outputs=3)


def test_results_round_trip(tmp_path, hmm, samples):
    a, b = samples
    rnn = cyclic(60, 20)
    res = compare(hmm, a, b, rnn, matcher=nearest_matcher, meta={"experiment": "x"})
    json_path, pq_path = tmp_path / "r.json", tmp_path / "r.parquet"
    res.save(json_path, pq_path)
    loaded = TestResults.load(json_path, pq_path)
    assert loaded == res
    assert loaded.volatilities_hmm.dtype == np.int64
    assert loaded.frequencies_rnn.shape == (60, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.parquet"]
    d = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert d["summary"]["euclidean_gap"] == pytest.approx(res.euclidean_gap)
    assert d["meta"]["experiment"] == "x"
    assert set(d["kgram_tv"]) == {"1", "2", "3", "4"}
    frame = res.to_frame()
    assert set(frame["source"]) == {"hmm_vs_hmm", "hmm_vs_rnn", "hmm", "rnn"}
    assert len(frame) == 2 * 60 + 2 * 60 + 2 * 60 * 3
    # a changed array no longer compares equal
    loaded.distances_rnn = loaded.distances_rnn + 1e-12
    assert loaded != res


def test_round_trip_keeps_nan_and_inf(tmp_path):
    a = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    rnn = np.array([[0, 2, 0, 2], [2, 2, 2, 2]])

    class ZeroProbHMM:  # output 2 has probability 0 -> log-likelihood -inf
        emission_matrix = np.array([[0.5, 0.5, 0.0]])

        def log_likelihood(self, obs):
            return np.where((obs == 2).any(axis=1), -np.inf, -np.log(2) * obs.shape[1])

    res = compare(ZeroProbHMM(), a, a, rnn, matcher=nearest_matcher, max_kgram=2)
    assert res.loglik_per_step_rnn == -math.inf
    assert np.isnan(res.transition_hmm[2]).all()
    res.save(tmp_path / "r.json", tmp_path / "r.parquet")
    d = json.loads((tmp_path / "r.json").read_text(), parse_constant=pytest.fail)
    assert d["loglik_per_step"]["rnn"] == "-inf"
    assert TestResults.load(tmp_path / "r.json", tmp_path / "r.parquet") == res


def test_load_rejects_other_json(tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "other"}')
    with pytest.raises(ValueError, match="schema"):
        TestResults.load(tmp_path / "x.json", tmp_path / "missing.parquet")


def test_test_class_with_given_observations(hmm, samples):
    a, b = samples
    t = TEST(None, None, num_seq=60, seq_len=20, outputs=3, matcher=nearest_matcher)
    res = t.run_all(a, b, cyclic(60, 20))
    assert res.meta["seed"] == 0 and res.meta["num_seq"]["rnn"] == 60
    dist = t.euclidean_distances()
    np.testing.assert_array_equal(dist["hmm_distances"], res.distances_hmm)
    np.testing.assert_array_equal(dist["rnn_distances"], res.distances_rnn)
    # seed-style helpers also take one-hot input
    one_hot = np.eye(3, dtype=np.float32)[a]
    assert t.volatilities(one_hot) == metrics.volatility_stats(a)
    np.testing.assert_array_equal(t.frequencies(one_hot)[0], metrics.frequency_stats(a, 3)[0])
    np.testing.assert_array_equal(t.transition_matrices(a), metrics.transition_matrix(a, 3))
    with pytest.raises(ValueError, match="no RNN given"):
        Test(hmm, None, num_seq=5, seq_len=4).gen_test_data()


def test_test_class_samples_reproducibly(hmm):
    import torch

    from hmmrnn.model import NoiseRNN

    with torch.random.fork_rng():  # leave the global torch RNG untouched for other tests
        torch.manual_seed(0)
        module = NoiseRNN(input_size=4, hidden_size=8, output_size=3)
    make = lambda seed: Test(hmm, module, 30, 12, seed=seed, matcher=nearest_matcher)  # noqa: E731
    d1, d2, d3 = make(5).gen_test_data(), make(5).gen_test_data(), make(6).gen_test_data()
    for key in ("hmm_a", "hmm_b", "rnn"):
        assert d1[key].shape == (30, 12) and d1[key].dtype == np.int64
        np.testing.assert_array_equal(d1[key], d2[key])
        assert not np.array_equal(d1[key], d3[key])
    assert not np.array_equal(d1["hmm_a"], d1["hmm_b"])
    res = make(5).run_all()
    assert res.distances_rnn.shape == (30,)
    assert res.meta["dynamics_mode"] == "full"


def test_test_class_accepts_user_facing_rnn(hmm):
    from hmmrnn.rnn import RNN

    rnn = RNN(input_size=4, hidden_size=8, output_size=3, device="cpu", seed=3)
    via_wrapper = Test(hmm, rnn, 20, 10, seed=1).gen_test_data()["rnn"]
    via_module = Test(hmm, rnn.module, 20, 10, seed=1).gen_test_data()["rnn"]
    np.testing.assert_array_equal(via_wrapper, via_module)
    assert set(np.unique(via_wrapper)) <= {0, 1, 2}


def test_sinkhorn_matching_known_answers(hmm, samples):
    from hmmrnn.sinkhorn import match_sequences

    a, b = samples
    res = compare(hmm, a, a.copy(), b, max_kgram=2)
    # identical clouds: every sequence is matched to itself (the first copy of a duplicate)
    np.testing.assert_array_equal(res.distances_hmm, 0.0)
    assert res.match_hmm["distinct_fraction"] == len(np.unique(a, axis=0)) / len(a)
    assert res.match_hmm["converged"] is True
    # our sqrt(2 * hamming) distances agree with the matcher's own one-hot distances
    m = match_sequences(a, b, 3)
    np.testing.assert_allclose(res.distances_rnn, m.distances)
    assert res.summary()["distance_mean_rnn"] > 1.0
