"""Pure metrics on observation sequences, used to compare HMM and RNN samples.

Every function takes integer observation arrays of shape ``(num_seq, seq_len)`` with values in
``[0, outputs)`` and validates them up front. Nothing here draws random numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_observations",
    "volatilities",
    "volatility_stats",
    "frequencies",
    "frequency_stats",
    "transition_counts",
    "transition_matrix",
    "transition_sq_diff",
    "euclidean_distances",
    "matched_one_hot_distances",
    "kgram_distribution",
    "kgram_tv",
    "kgram_tv_profile",
    "run_lengths",
    "run_length_tv",
    "total_variation",
    "mean_loglik_per_step",
    "fidelity_score",
]

# k-gram histograms have outputs**k bins; beyond this they stop fitting comfortably in memory.
MAX_KGRAM_BINS = 2**24


def check_observations(obs, outputs: int | None = None, name: str = "obs") -> np.ndarray:
    """Validate an observation array and return it as int64.

    Parameters
    ----------
    obs : array_like, shape (num_seq, seq_len)
        Integer observations.
    outputs : int, optional
        Number of output symbols; when given, every value must lie in ``[0, outputs)``.
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray of int64, shape (num_seq, seq_len)
    """
    arr = np.asarray(obs)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D integer array (num_seq, seq_len) (got shape {arr.shape}); "
            "pass observations, not one-hot arrays"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one sequence of length >= 1 (got {arr.shape})")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype (got {arr.dtype})")
    if outputs is not None:
        outputs = _check_outputs(outputs)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= outputs:
            raise ValueError(
                f"{name} values must lie in [0, {outputs}) for outputs={outputs} "
                f"(got min {lo}, max {hi})"
            )
    return arr.astype(np.int64, copy=False)


def _check_outputs(outputs) -> int:
    if isinstance(outputs, bool) or not isinstance(outputs, (int, np.integer)) or outputs < 1:
        raise ValueError(f"outputs must be a positive integer (got {outputs!r})")
    return int(outputs)


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be an integer >= 1 (got {k!r})")
    return int(k)


def volatilities(obs) -> np.ndarray:
    """Number of output changes in each sequence.

    Parameters
    ----------
    obs : array_like of int, shape (num_seq, seq_len)

    Returns
    -------
    numpy.ndarray of int64, shape (num_seq,)
        Count of steps ``t`` with ``obs[:, t] != obs[:, t - 1]``; between 0 and ``seq_len - 1``.
    """
    obs = check_observations(obs)
    return np.count_nonzero(np.diff(obs, axis=1), axis=1).astype(np.int64)


def volatility_stats(obs) -> tuple[float, float]:
    """Mean and (population) standard deviation of :func:`volatilities` over sequences."""
    v = volatilities(obs)
    return float(v.mean()), float(v.std())


def frequencies(obs, outputs: int) -> np.ndarray:
    """Per-sequence output frequencies.

    Parameters
    ----------
    obs : array_like of int, shape (num_seq, seq_len)
    outputs : int

    Returns
    -------
    numpy.ndarray of float64, shape (num_seq, outputs)
        Fraction of steps on which each output was emitted; every row sums to 1.
    """
    obs = check_observations(obs, outputs)
    n, t = obs.shape
    rows = np.arange(n, dtype=np.int64)[:, None]
    counts = np.bincount((rows * outputs + obs).ravel(), minlength=n * outputs)
    return counts.reshape(n, outputs) / t


def frequency_stats(obs, outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over sequences of :func:`frequencies`, each shape (outputs,)."""
    f = frequencies(obs, outputs)
    return f.mean(axis=0), f.std(axis=0)


def transition_counts(obs, outputs: int) -> np.ndarray:
    """Counts of output transitions between consecutive steps, pooled over sequences.

    Returns
    -------
    numpy.ndarray of int64, shape (outputs, outputs)
        ``C[a, b]`` = number of steps with ``obs[:, t - 1] == a`` and ``obs[:, t] == b``.
    """
    obs = check_observations(obs, outputs)
    codes = obs[:, :-1] * outputs + obs[:, 1:]
    return np.bincount(codes.ravel(), minlength=outputs * outputs).reshape(outputs, outputs)


def transition_matrix(obs, outputs: int) -> np.ndarray:
    """Empirical output transition matrix (row-normalised :func:`transition_counts`).

    Counts are pooled over all sequences before normalising, so short sequences and rare
    outputs do not get the weight of a whole sequence each.

    Returns
    -------
    numpy.ndarray of float64, shape (outputs, outputs)
        Rows sum to 1. A row whose output is never followed by another step (it never occurs
        before the last step) has no data and is all NaN rather than a made-up distribution.
    """
    counts = transition_counts(obs, outputs).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, np.nan)


def transition_sq_diff(p, q) -> np.ndarray:
    """Elementwise squared difference ``(p - q) ** 2`` of two transition matrices (same shape)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(
            f"transition_sq_diff needs two 2-D matrices of equal shape (got {p.shape}, {q.shape})"
        )
    return (p - q) ** 2


def euclidean_distances(x, y, index) -> np.ndarray:
    """Euclidean distances of matched pairs ``(x[index[i]], y[i])``.

    Parameters
    ----------
    x : array_like, shape (n, D)
        Reference rows (e.g. flattened one-hot sequences, D = seq_len * outputs).
    y : array_like, shape (m, D)
    index : array_like of int, shape (m,)
        Row of ``x`` matched to each row of ``y``.

    Returns
    -------
    numpy.ndarray of float64, shape (m,)
        For one-hot rows this equals ``sqrt(2 * hamming)`` of the underlying observations.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be 2-D with the same number of columns (got {x.shape}, {y.shape})"
        )
    index = _check_index(index, len(x), len(y))
    return np.linalg.norm(x[index] - y, axis=1)


def matched_one_hot_distances(obs_x, obs_y, index, outputs: int | None = None) -> np.ndarray:
    """Euclidean distance between the one-hot encodings of matched observation sequences.

    Equivalent to :func:`euclidean_distances` on flattened one-hot arrays, computed as
    ``sqrt(2 * hamming)`` without building them (two one-hot rows differing at a step differ
    by 1 in two coordinates).

    Parameters
    ----------
    obs_x : array_like of int, shape (n, T)
    obs_y : array_like of int, shape (m, T)
    index : array_like of int, shape (m,)
        Row of ``obs_x`` matched to each row of ``obs_y``.
    outputs : int, optional
        Validates value ranges when given.

    Returns
    -------
    numpy.ndarray of float64, shape (m,)
    """
    obs_x = check_observations(obs_x, outputs, "obs_x")
    obs_y = check_observations(obs_y, outputs, "obs_y")
    if obs_x.shape[1] != obs_y.shape[1]:
        raise ValueError(
            f"obs_x and obs_y must have the same seq_len (got {obs_x.shape}, {obs_y.shape})"
        )
    index = _check_index(index, len(obs_x), len(obs_y))
    hamming = np.count_nonzero(obs_x[index] != obs_y, axis=1)
    return np.sqrt(2.0 * hamming)


def _check_index(index, n: int, m: int) -> np.ndarray:
    index = np.asarray(index)
    if index.shape != (m,) or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(
            f"index must be an integer array of shape ({m},) (got {index.dtype} {index.shape})"
        )
    if m and (index.min() < 0 or index.max() >= n):
        raise ValueError(
            f"index values must lie in [0, {n}) (got min {index.min()}, max {index.max()})"
        )
    return index.astype(np.int64, copy=False)


def total_variation(p, q) -> float:
    """Total variation distance ``0.5 * sum |p - q|`` of two probability vectors."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape (got {p.shape}, {q.shape})")
    return float(0.5 * np.abs(p - q).sum())


def kgram_distribution(obs, outputs: int, k: int) -> np.ndarray:
    """Distribution of sliding-window k-grams, pooled over sequences.

    Each window ``obs[i, t:t + k]`` is encoded in base ``outputs`` with the first symbol most
    significant, so for ``outputs=3`` the 2-gram (0, 1) is bin 1 and (1, 0) is bin 3.

    Parameters
    ----------
    obs : array_like of int, shape (num_seq, seq_len)
    outputs : int
    k : int
        Window length, ``1 <= k <= seq_len``.

    Returns
    -------
    numpy.ndarray of float64, shape (outputs ** k,)
        Probabilities summing to 1 over the ``num_seq * (seq_len - k + 1)`` windows.
    """
    obs = check_observations(obs, outputs)
    k = _check_k(k)
    if k > obs.shape[1]:
        raise ValueError(f"k must be <= seq_len={obs.shape[1]} (got k={k})")
    bins = outputs**k
    if bins > MAX_KGRAM_BINS:
        raise ValueError(
            f"outputs**k = {outputs}**{k} = {bins} bins exceeds the limit {MAX_KGRAM_BINS}; "
            "use a smaller k"
        )
    windows = np.lib.stride_tricks.sliding_window_view(obs, k, axis=1)
    weights = outputs ** np.arange(k - 1, -1, -1, dtype=np.int64)
    codes = windows @ weights
    counts = np.bincount(codes.ravel(), minlength=bins)
    return counts / counts.sum()


def kgram_tv(obs_a, obs_b, outputs: int, k: int) -> float:
    """Total variation distance between the k-gram distributions of two observation sets."""
    return total_variation(
        kgram_distribution(obs_a, outputs, k), kgram_distribution(obs_b, outputs, k)
    )


def kgram_tv_profile(
    obs_rnn, obs_hmm_a, obs_hmm_b, outputs: int, max_k: int = 4
) -> dict[int, dict[str, float]]:
    """k-gram TV of the RNN to the HMM for k = 1..max_k, next to the HMM's own sampling floor.

    Parameters
    ----------
    obs_rnn : array_like of int, shape (N, T)
        RNN samples.
    obs_hmm_a, obs_hmm_b : array_like of int, shape (N, T)
        Two independent HMM sample sets. Set A is the reference; ``TV(B, A)`` is the distance
        that finite sampling alone produces, so an RNN cannot be expected to go below it. Use
        sets of the same size as ``obs_rnn`` for the floor to be comparable.
    outputs : int
    max_k : int

    Returns
    -------
    dict
        ``{k: {"rnn": TV(rnn, hmm_a), "floor": TV(hmm_b, hmm_a)}}`` for k = 1..max_k.
    """
    max_k = _check_k(max_k, "max_k")
    out = {}
    for k in range(1, max_k + 1):
        ref = kgram_distribution(obs_hmm_a, outputs, k)
        out[k] = {
            "rnn": total_variation(kgram_distribution(obs_rnn, outputs, k), ref),
            "floor": total_variation(kgram_distribution(obs_hmm_b, outputs, k), ref),
        }
    return out


def run_lengths(obs, outputs: int) -> dict[int, np.ndarray]:
    """Histograms of dwell times: lengths of maximal runs of each output.

    Runs end at sequence boundaries: a run touching the start or end of a sequence is counted
    with its observed (possibly truncated) length, since the true dwell time is unknown there.
    The same truncation applies to HMM and RNN samples of equal length, so comparisons stay fair.

    Parameters
    ----------
    obs : array_like of int, shape (num_seq, seq_len)
    outputs : int

    Returns
    -------
    dict of int -> numpy.ndarray of int64, shape (seq_len + 1,)
        ``hist[o][L]`` = number of maximal runs of output ``o`` with length ``L``
        (``hist[o][0]`` is always 0).
    """
    obs = check_observations(obs, outputs)
    n, t = obs.shape
    starts = np.ones((n, t), dtype=bool)
    starts[:, 1:] = obs[:, 1:] != obs[:, :-1]
    flat_starts = starts.ravel()
    # Every sequence begins with a run start, so run ids never span two sequences.
    run_id = np.cumsum(flat_starts) - 1
    lengths = np.bincount(run_id)
    values = obs.ravel()[flat_starts]
    hist = np.bincount(values * (t + 1) + lengths, minlength=outputs * (t + 1))
    hist = hist.reshape(outputs, t + 1)
    return {o: hist[o] for o in range(outputs)}


def run_length_tv(obs_a, obs_b, outputs: int) -> np.ndarray:
    """Per-output total variation between the dwell-time distributions of two observation sets.

    Both sets must have the same ``seq_len`` (run lengths are truncated by it).

    Returns
    -------
    numpy.ndarray of float64, shape (outputs,)
        TV between normalised :func:`run_lengths` histograms. An output that never occurs in
        either set gives 0; one that occurs in only one set gives 1.
    """
    obs_a = check_observations(obs_a, outputs, "obs_a")
    obs_b = check_observations(obs_b, outputs, "obs_b")
    if obs_a.shape[1] != obs_b.shape[1]:
        raise ValueError(
            f"obs_a and obs_b must have the same seq_len (got {obs_a.shape}, {obs_b.shape})"
        )
    ha, hb = run_lengths(obs_a, outputs), run_lengths(obs_b, outputs)
    out = np.empty(outputs)
    for o in range(outputs):
        sa, sb = ha[o].sum(), hb[o].sum()
        if sa == 0 and sb == 0:
            out[o] = 0.0
        elif sa == 0 or sb == 0:
            out[o] = 1.0
        else:
            out[o] = total_variation(ha[o] / sa, hb[o] / sb)
    return out


def mean_loglik_per_step(hmm, obs) -> float:
    """Mean over sequences of the HMM log-likelihood divided by ``seq_len`` (nats per step).

    Parameters
    ----------
    hmm : object
        Anything with ``log_likelihood(observations) -> (num_seq,)``, e.g. ``hmmrnn.hmm.HMM``.
    obs : array_like of int, shape (num_seq, seq_len)
    """
    outputs = None
    emission = getattr(hmm, "emission_matrix", None)
    if emission is not None:
        outputs = int(np.shape(emission)[1])
    obs = check_observations(obs, outputs)
    ll = np.asarray(hmm.log_likelihood(obs), dtype=np.float64)
    if ll.shape != (obs.shape[0],):
        raise ValueError(f"hmm.log_likelihood must return shape ({obs.shape[0]},) (got {ll.shape})")
    return float(ll.mean() / obs.shape[1])


def fidelity_score(
    hmm, reference, *, max_k: int = 4, tv_target: float = 0.02, loglik_tolerance: float = 0.0025
):
    """A score of generated sequences: their worst fidelity measure, in units of its target.

    Parameters
    ----------
    hmm : hmmrnn.hmm.HMM
        The HMM that generated ``reference`` (anything with ``emission_matrix`` and
        ``log_likelihood``).
    reference : array_like of int, shape (num_seq, seq_len)
        Sequences of the HMM itself (e.g. the validation data).
    max_k : int
        Longest k-gram compared.
    tv_target, loglik_tolerance : float
        The units: k-gram total variation, and the distance of the mean HMM log-likelihood
        per step from the reference's (nats). 0.02 is the fidelity target; 0.0025 nats is
        about where the Euclidean gap reached 1 % (Fully: a gap of +2.4 % at 0.007 nats,
        -0.45 % and +0.36 % at 0.0005 and 0.0007).

    Returns
    -------
    callable
        ``score(obs)`` for ``obs`` of shape (n, seq_len): the largest of
        ``kgram_tv(obs, reference, k) / tv_target`` for k = 1..max_k and
        ``|mean_loglik_per_step(hmm, obs) - mean_loglik_per_step(hmm, reference)| /
        loglik_tolerance``; 0 for the reference itself, at most 1 when every measure is
        within its unit. The log-likelihood term sees sequences that are too variable or too
        regular as a whole; the k-gram terms see misplaced frequencies and flickers.
    """
    outputs = int(np.shape(hmm.emission_matrix)[1])
    reference = check_observations(reference, outputs, name="reference")
    max_k = _check_k(max_k, "max_k")
    if max_k > reference.shape[1]:
        raise ValueError(f"max_k must be <= seq_len={reference.shape[1]} (got {max_k})")
    for name, value in (("tv_target", tv_target), ("loglik_tolerance", loglik_tolerance)):
        if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
            raise ValueError(f"{name} must be a positive number (got {value!r})")
    target_ll = mean_loglik_per_step(hmm, reference)
    target_kgrams = [kgram_distribution(reference, outputs, k) for k in range(1, max_k + 1)]

    def score(obs) -> float:
        obs = check_observations(obs, outputs)
        if obs.shape[1] != reference.shape[1]:
            raise ValueError(
                f"obs must have seq_len {reference.shape[1]} like the reference "
                f"(got shape {obs.shape})"
            )
        tv = max(
            total_variation(kgram_distribution(obs, outputs, k), q)
            for k, q in enumerate(target_kgrams, 1)
        )
        ll = abs(mean_loglik_per_step(hmm, obs) - target_ll)
        return max(tv / tv_target, ll / loglik_tolerance)

    return score
