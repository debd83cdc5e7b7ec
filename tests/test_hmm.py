"""Known-answer tests for hmmrnn.hmm: generated matrices, validation, sampling, likelihoods."""

import json
import math

import numpy as np
import pytest
from hmmlearn.hmm import CategoricalHMM

from hmmrnn import hmm as H
from hmmrnn.hmm import HMM

# --------------------------------------------------------------------------- generators


def test_stay_prob_three_states():
    expected = [[0.95, 0.05, 0.0], [0.025, 0.95, 0.025], [0.0, 0.05, 0.95]]
    np.testing.assert_allclose(HMM(3, 3, stay_prob=0.95).transition_matrix, expected, atol=1e-15)


def test_stay_prob_four_and_two_states_and_one():
    p = 0.9
    expected4 = [
        [0.9, 0.1, 0, 0],
        [0.05, 0.9, 0.05, 0],
        [0, 0.05, 0.9, 0.05],
        [0, 0, 0.1, 0.9],
    ]
    np.testing.assert_allclose(H.stay_prob_transitions(4, p), expected4, atol=1e-15)
    np.testing.assert_allclose(H.stay_prob_transitions(2, p), [[0.9, 0.1], [0.1, 0.9]])
    assert H.stay_prob_transitions(1, p).tolist() == [[1.0]]


@pytest.mark.parametrize(("states", "q"), [(3, 0.2236068), (5, 0.4728708)])
def test_target_prob_q(states, q):
    mat = HMM(states, 3, transition_method="target_prob", target_prob=0.05).transition_matrix
    assert mat[0, 1] == pytest.approx(q, abs=1e-7)
    assert mat[0, 0] == pytest.approx(1 - q, abs=1e-7)
    assert mat[-1, -2] == pytest.approx(q, abs=1e-7)
    assert mat[1, 1] == pytest.approx(1 - 2 * q, abs=1e-7)
    assert mat[1, 0] == mat[1, 2] == pytest.approx(q, abs=1e-7)
    # q ** (S - 1) is the target probability by construction
    assert mat[0, 1] ** (states - 1) == pytest.approx(0.05, rel=1e-12)
    np.testing.assert_allclose(mat.sum(axis=1), 1.0, atol=1e-15)
    assert np.count_nonzero(mat) == 3 * states - 2  # tridiagonal


def test_target_prob_three_state_rows():
    q = math.sqrt(0.05)
    expected = [[1 - q, q, 0], [q, 1 - 2 * q, q], [0, q, 1 - q]]
    np.testing.assert_allclose(H.target_prob_transitions(3, 0.05), expected, atol=1e-15)


def test_target_prob_six_states_negative_stay_raises_with_numbers():
    with pytest.raises(ValueError, match=r"states=6.*q = .*0\.5493.*1 - 2q = -0\.099"):
        HMM(6, 3, transition_method="target_prob", target_prob=0.05)


def test_fully_connected():
    expected = [
        [0.7, 0.1, 0.1, 0.1],
        [0.1, 0.7, 0.1, 0.1],
        [0.1, 0.1, 0.7, 0.1],
        [0.1, 0.1, 0.1, 0.7],
    ]
    mat = HMM(4, 3, transition_method="fully", stay_prob=0.7).transition_matrix
    np.testing.assert_allclose(mat, expected, atol=1e-15)
    assert H.fully_transitions(1, 0.3).tolist() == [[1.0]]


def test_linear_three_outputs():
    expected = [[0.99, 0.01, 0.0], [0.495, 0.01, 0.495], [0.0, 0.01, 0.99]]
    np.testing.assert_allclose(HMM(3, 3).emission_matrix, expected, atol=1e-15)
    np.testing.assert_allclose(H.linear_emissions(1, 3), [[0.99, 0.01, 0.0]], atol=1e-15)


def test_linear_other_outputs_normalised():
    # 2 states, 4 outputs: linspace(0.99, 0, 4) = .99, .66, .33, 0 -> /1.98
    expected = [[0.5, 1 / 3, 1 / 6, 0.0], [0.0, 1 / 6, 1 / 3, 0.5]]
    np.testing.assert_allclose(H.linear_emissions(2, 4), expected, atol=1e-15)


def test_gaussian_two_states_three_outputs_by_hand():
    # centres 0 and 2, width 0.1 * 2 = 0.2: weights exp(-0.2 * (d / 0.2)**2) = exp(-5 d**2)
    w = np.exp(-5.0 * np.array([0.0, 1.0, 4.0]))
    row0 = w / w.sum()
    np.testing.assert_allclose(H.gaussian_emissions(2, 3), [row0, row0[::-1]], rtol=1e-14)


def test_gaussian_one_output_raises():
    with pytest.raises(ValueError, match="outputs=1"):
        HMM(2, 1, emission_method="gaussian")


def test_triangular():
    expected = [[0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98]]
    np.testing.assert_allclose(HMM(emission_method="triangular").emission_matrix, expected)
    with pytest.raises(ValueError, match="states=4, outputs=3"):
        HMM(4, 3, emission_method="triangular")


def test_gen_methods_return_the_matrices():
    h = HMM(4, 5, transition_method="fully", emission_method="gaussian")
    np.testing.assert_array_equal(h.gen_start_prob(), np.full(4, 0.25))
    np.testing.assert_array_equal(h.gen_trans_mat(), h.transition_matrix)
    np.testing.assert_array_equal(h.gen_emission_prob(), h.emission_matrix)
    np.testing.assert_array_equal(h.start_prob, np.full(4, 0.25))


def test_custom_matrices_override():
    h = HMM(
        2,
        2,
        start_prob=[1, 0],
        transition_matrix=[[0, 1], [1, 0]],
        emission_matrix=[[0.3, 0.7], [1, 0]],
    )
    assert h.start_prob.tolist() == [1.0, 0.0]
    assert h.transition_matrix.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert h.emission_matrix.tolist() == [[0.3, 0.7], [1.0, 0.0]]
    assert h.transition_matrix.dtype == np.float64
    assert "custom=['start_prob', 'transition_matrix', 'emission_matrix']" in repr(h)
    # A custom matrix makes a method's size limits irrelevant.
    HMM(6, 3, transition_method="target_prob", transition_matrix=np.eye(6))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"states": 0}, "states must be a positive integer .got 0"),
        ({"states": 2.5}, r"states must be a positive integer .got 2\.5"),
        ({"states": True}, "states must be a positive integer .got True"),
        ({"outputs": -3}, "outputs must be a positive integer .got -3"),
        ({"stay_prob": 1.5}, r"stay_prob must be a probability in \[0, 1\] .got 1\.5"),
        ({"target_prob": -0.1}, r"target_prob must be a probability .* .got -0\.1"),
        ({"stay_prob": float("nan")}, "stay_prob .* .got nan"),
        ({"transition_method": "ring"}, "unknown transition_method 'ring'; valid: 'stay_prob'"),
        ({"emission_method": "poisson"}, "unknown emission_method 'poisson'; valid: 'linear'"),
        (
            {"transition_matrix": np.eye(2)},
            r"transition_matrix must have shape \(3, 3\) .got shape \(2, 2\)",
        ),
        ({"emission_matrix": np.ones((3, 2)) / 2}, r"emission_matrix must have shape \(3, 3\)"),
        ({"start_prob": [0.5, 0.6, -0.1]}, r"start_prob must be non-negative .* \[-0\.1\]"),
        (
            {"transition_matrix": [[0.9, 0, 0], [0, 1, 0], [0, 0, 1]]},
            r"transition_matrix rows must sum to 1 .got sums \[0\.9 1\.  1\. \]",
        ),
        ({"emission_matrix": [[np.nan, 1, 0]] * 3}, "emission_matrix must be finite"),
        ({"start_prob": "abc"}, "start_prob must be a numeric array of shape"),
    ],
)
def test_bad_constructor_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        HMM(**kwargs)


def test_validate_stochastic_tolerance():
    ok = H.validate_stochastic("m", [[0.5, 0.5 + 5e-9]], (1, 2))
    assert ok.dtype == np.float64
    with pytest.raises(ValueError, match="m rows must sum to 1"):
        H.validate_stochastic("m", [[0.5, 0.5 + 5e-8]], (1, 2))


def test_bad_sampling_and_likelihood_arguments():
    h = HMM()
    with pytest.raises(ValueError, match="num_seq must be a positive integer .got 0"):
        h.sample(0, 5)
    with pytest.raises(ValueError, match="seq_len must be a positive integer .got -1"):
        h.gen_seq(3, -1)
    with pytest.raises(ValueError, match=r"observations must lie in \[0, 3\) .got values \[3\]"):
        h.log_likelihood([[0, 3]])
    with pytest.raises(ValueError, match=r"observations must be 2-D .* shape \(2,\)"):
        h.log_likelihood([0, 1])
    with pytest.raises(ValueError, match="observations must hold integers .got dtype float64"):
        H.one_hot(np.zeros((2, 2)), 3)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown HMM parameters \['colour'\]"):
        HMM.from_dict({"states": 3, "colour": "red"})


# --------------------------------------------------------------------------- sampling


def _stationary(trans):
    vals, vecs = np.linalg.eig(trans.T)
    v = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
    return v / v.sum()


def test_sample_shapes_dtypes_and_seed():
    h = HMM(4, 5, transition_method="fully", stay_prob=0.5, emission_method="gaussian")
    obs, states = h.sample(50, 7, rng=3)
    assert obs.shape == states.shape == (50, 7)
    assert obs.dtype == states.dtype == np.int64
    obs2, states2 = h.sample(50, 7, rng=np.random.default_rng(3))
    assert obs.tobytes() == obs2.tobytes() and states.tobytes() == states2.tobytes()
    obs3, states3 = h.sample(50, 7, rng=4)
    assert not np.array_equal(obs, obs3) and not np.array_equal(states, states3)
    one_hot, states4 = h.gen_seq(50, 7, rng=3)
    assert one_hot.dtype == np.float32 and one_hot.shape == (50, 7, 5)
    np.testing.assert_array_equal(one_hot.argmax(-1), obs)
    np.testing.assert_array_equal(one_hot.sum(-1), 1.0)
    np.testing.assert_array_equal(states4, states)


def test_deterministic_chain_exact_sequence():
    # start in state 0, cycle 0 -> 2 -> 1 -> 3 -> 0, emit the state's symbol
    perm = np.zeros((4, 4))
    perm[[0, 2, 1, 3], [2, 1, 3, 0]] = 1
    h = HMM(
        4,
        4,
        start_prob=[1, 0, 0, 0],
        transition_matrix=perm,
        emission_matrix=np.eye(4),
    )
    obs, states = h.sample(5, 9, rng=0)
    expected = np.array([0, 2, 1, 3, 0, 2, 1, 3, 0])
    np.testing.assert_array_equal(states, np.tile(expected, (5, 1)))
    np.testing.assert_array_equal(obs, np.tile(expected, (5, 1)))


def test_zero_probability_entries_never_sampled():
    # The first and last symbols have zero probability: round-off must not reach them.
    h = HMM(
        2,
        4,
        transition_matrix=[[0.0, 1.0], [0.1, 0.9]],
        emission_matrix=[[0.0, 1 / 3, 2 / 3, 0.0], [0.0, 0.1, 0.9, 0.0]],
    )
    obs, states = h.sample(2000, 20, rng=1)
    assert set(np.unique(obs)) == {1, 2}
    assert np.all(states[:, 1:][states[:, :-1] == 0] == 1)


def test_sampled_frequencies_and_transitions_match_model():
    h = HMM(3, 3, stay_prob=0.8)
    n, t = 4000, 25
    # Start in the stationary distribution so every time step has the same marginal.
    h = HMM(3, 3, stay_prob=0.8, start_prob=_stationary(h.transition_matrix))
    obs, states = h.sample(n, t, rng=11)
    pi = h.start_prob
    # marginal state frequencies per time step (independent across sequences)
    freq = np.stack([(states == k).mean(axis=0) for k in range(3)], axis=1)  # (T, S)
    sigma = np.sqrt(pi * (1 - pi) / n)
    assert np.all(np.abs(freq - pi) < 5 * sigma)
    # emitted symbol marginal: pi @ B
    p_obs = pi @ h.emission_matrix
    f_obs = np.array([(obs[:, 3] == k).mean() for k in range(3)])
    assert np.all(np.abs(f_obs - p_obs) < 5 * np.sqrt(p_obs * (1 - p_obs) / n))
    # transition counts from step 4 to 5 given the state at step 4
    for i in range(3):
        src = states[:, 4] == i
        m = src.sum()
        counts = np.array([(states[src, 5] == j).sum() for j in range(3)])
        p = h.transition_matrix[i]
        assert np.all(np.abs(counts / m - p) <= 5 * np.sqrt(p * (1 - p) / m) + 1e-12)
    # emissions given the state
    for i in range(3):
        emitted = obs[states == i]
        p = h.emission_matrix[i]
        f = np.array([(emitted == k).mean() for k in range(3)])
        assert np.all(np.abs(f - p) <= 5 * np.sqrt(p * (1 - p) / emitted.size) + 1e-12)


# --------------------------------------------------------------------------- likelihood


def test_log_likelihood_by_hand():
    pi = np.array([0.6, 0.4])
    a = np.array([[0.7, 0.3], [0.2, 0.8]])
    b = np.array([[0.9, 0.1], [0.3, 0.7]])
    h = HMM(2, 2, start_prob=pi, transition_matrix=a, emission_matrix=b)
    # P(o = [0, 1]) = sum_{s0, s1} pi[s0] b[s0, 0] a[s0, s1] b[s1, 1]
    p01 = (
        0.6 * 0.9 * 0.7 * 0.1
        + 0.6 * 0.9 * 0.3 * 0.7
        + 0.4 * 0.3 * 0.2 * 0.1
        + 0.4 * 0.3 * 0.8 * 0.7
    )
    assert p01 == pytest.approx(0.2208)
    p11 = 0.6 * 0.1 * (0.7 * 0.1 + 0.3 * 0.7) + 0.4 * 0.7 * (0.2 * 0.1 + 0.8 * 0.7)
    ll = h.log_likelihood([[0, 1], [1, 1]])
    np.testing.assert_allclose(ll, np.log([p01, p11]), rtol=1e-14)
    # all sequences of length 3 are a probability distribution
    grid = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, -1).T
    assert np.exp(h.log_likelihood(grid)).sum() == pytest.approx(1.0, abs=1e-14)


def test_log_likelihood_impossible_sequence_is_minus_inf():
    h = HMM(2, 2, start_prob=[1, 0], transition_matrix=np.eye(2), emission_matrix=np.eye(2))
    ll = h.log_likelihood([[0, 0, 0], [0, 1, 0], [1, 1, 1]])
    assert ll[0] == 0.0
    assert ll[1] == -np.inf and ll[2] == -np.inf


@pytest.mark.parametrize(("states", "outputs", "seed"), [(2, 3, 0), (4, 5, 1), (7, 2, 2)])
def test_log_likelihood_matches_hmmlearn(states, outputs, seed):
    rng = np.random.default_rng(seed)
    h = HMM(
        states,
        outputs,
        start_prob=rng.dirichlet(np.ones(states)),
        transition_matrix=rng.dirichlet(np.ones(states), size=states),
        emission_matrix=rng.dirichlet(np.ones(outputs), size=states),
    )
    obs, _ = h.sample(20, 40, rng=rng)
    ref = CategoricalHMM(n_components=states, n_features=outputs)
    ref.startprob_ = h.start_prob
    ref.transmat_ = h.transition_matrix
    ref.emissionprob_ = h.emission_matrix
    expected = [ref.score(o.reshape(-1, 1)) for o in obs]
    np.testing.assert_allclose(h.log_likelihood(obs), expected, rtol=1e-8)


# --------------------------------------------------------------------------- splits, one-hot, dict


def test_one_hot_known():
    out = H.one_hot([[0, 2], [1, 1]], 3)
    expected = [[[1, 0, 0], [0, 0, 1]], [[0, 1, 0], [0, 1, 0]]]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("num_seq", "ratios", "counts"),
    [
        (30000, (1 / 3, 1 / 3, 1 / 3), (10000, 10000, 10000)),
        (10, (1 / 3, 1 / 3, 1 / 3), (4, 3, 3)),
        (3, (1 / 3, 1 / 3, 1 / 3), (1, 1, 1)),
        (7, (0.5, 0.25, 0.25), (5, 1, 1)),
        (10, (0.8, 0.1, 0.1), (8, 1, 1)),
        (5, (1, 0, 0), (5, 0, 0)),
    ],
)
def test_split_labels_exact_counts(num_seq, ratios, counts):
    labels = H.split_labels(num_seq, ratios, rng=0)
    assert labels.dtype == np.int8 and labels.shape == (num_seq,)
    assert tuple(np.bincount(labels, minlength=3)) == counts


def test_split_labels_shuffled_and_seeded():
    a = H.split_labels(300, rng=5)
    np.testing.assert_array_equal(a, H.split_labels(300, rng=5))
    assert not np.array_equal(a, H.split_labels(300, rng=6))
    assert not np.array_equal(a, np.sort(a))


@pytest.mark.parametrize(
    ("ratios", "pattern"),
    [
        ((0.5, 0.5), r"three non-negative numbers .* .got \(0\.5, 0\.5\)"),
        ((0.5, 0.6, -0.1), r"three non-negative .*-0\.1"),
        ((0.5, 0.3, 0.3), r"ratios must sum to 1 .got \(0\.5, 0\.3, 0\.3\)"),
    ],
)
def test_split_labels_bad_ratios(ratios, pattern):
    with pytest.raises(ValueError, match=pattern):
        H.split_labels(10, ratios, rng=0)


def test_split_data():
    h = HMM()
    x, s = h.gen_seq(10, 4, rng=0)
    parts = h.split_data(x, s, ratios=(0.6, 0.2, 0.2), rng=1)
    labels = H.split_labels(10, (0.6, 0.2, 0.2), rng=1)
    assert list(parts) == ["train", "val", "test"]
    for i, name in enumerate(["train", "val", "test"]):
        xs, ss = parts[name]
        np.testing.assert_array_equal(xs, x[labels == i])
        np.testing.assert_array_equal(ss, s[labels == i])
    assert [len(parts[k][0]) for k in parts] == [6, 2, 2]
    with pytest.raises(ValueError, match=r"got shapes \(10, 4, 3\) and \(9, 4\)"):
        h.split_data(x, s[:9])


def test_to_dict_round_trip_through_json():
    h = HMM(4, 5, stay_prob=0.8, transition_method="fully", emission_method="gaussian")
    d = json.loads(json.dumps(h.to_dict()))
    assert set(d) == set(H.HMM_PARAMETERS)
    h2 = HMM.from_dict(d)
    assert h2.to_dict() == h.to_dict()
    for name in ("start_prob", "transition_matrix", "emission_matrix"):
        assert getattr(h2, name).tobytes() == getattr(h, name).tobytes()
    assert repr(h2) == repr(h)
    assert "transition_method='fully'" in repr(h) and "custom" not in repr(h)


def test_module_dispatchers():
    np.testing.assert_array_equal(
        H.make_transition_matrix("target_prob", 3, target_prob=0.05),
        H.target_prob_transitions(3, 0.05),
    )
    np.testing.assert_array_equal(H.make_emission_matrix("linear", 3, 3), H.linear_emissions(3, 3))
    with pytest.raises(ValueError, match="unknown transition_method 'x'; valid: 'stay_prob', "):
        H.make_transition_matrix("x", 3)
