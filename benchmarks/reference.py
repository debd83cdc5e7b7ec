"""Straightforward dense reference implementations used by the benchmark and the tests.

``dense_sinkhorn_match`` follows the matching procedure of the paper's test literally: a dense
``(n, m)`` Euclidean cost matrix, alternating log-domain Sinkhorn updates with uniform marginals,
stopping once the summed absolute change of both potentials in one iteration falls below ``tol``,
and, for every sequence of ``y``, the ``x`` sequence with the largest transport-plan weight.
It keeps several ``(n, m)`` matrices alive and is meant for small inputs and timing comparisons.
"""

from __future__ import annotations

import numpy as np
import torch


def dense_sinkhorn_match(
    x,
    y,
    epsilon: float = 0.1,
    max_iter: int = 1000,
    tol: float = 0.1,
    dtype: torch.dtype = torch.float64,
) -> dict:
    """Match every row of ``y`` to a row of ``x`` with dense log-domain Sinkhorn.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)
    epsilon, max_iter, tol : float, int, float
        Entropic regularisation, iteration cap, and threshold on
        ``sum |f - f_prev| + sum |g - g_prev|``.
    dtype : torch.dtype
        Floating type of every dense matrix (the paper used float32).

    Returns
    -------
    dict
        ``index`` int64 (m,), ``distances`` float64 (m,), ``distinct_fraction`` float,
        ``n_iter`` int, ``converged`` bool, ``f`` (n,), ``g`` (m,) float64 potentials and
        ``log_plan`` (n, m) float64, ``(f_i + g_j - C_ij) / epsilon``.
    """
    x = torch.as_tensor(np.asarray(x), dtype=dtype)
    y = torch.as_tensor(np.asarray(y), dtype=dtype)
    n, m = x.shape[0], y.shape[0]
    cost = torch.cdist(x, y)
    log_a = torch.full((n,), float(np.log(1.0 / n)), dtype=dtype)
    log_b = torch.full((m,), float(np.log(1.0 / m)), dtype=dtype)
    f = torch.zeros(n, dtype=dtype)
    g = torch.zeros(m, dtype=dtype)
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        f_prev, g_prev = f, g
        f = epsilon * log_a - epsilon * torch.logsumexp((g[None, :] - cost) / epsilon, dim=1)
        g = epsilon * log_b - epsilon * torch.logsumexp((f[:, None] - cost) / epsilon, dim=0)
        change = (f - f_prev).abs().sum() + (g - g_prev).abs().sum()
        if change.item() < tol:
            converged = True
            break
    log_plan = (f[:, None] + g[None, :] - cost) / epsilon
    index = log_plan.argmax(dim=0)
    distances = torch.linalg.norm(x[index] - y, dim=1)
    return {
        "index": index.numpy().astype(np.int64),
        "distances": distances.numpy().astype(np.float64),
        "distinct_fraction": len(np.unique(index.numpy())) / m,
        "n_iter": n_iter,
        "converged": converged,
        "f": f.double().numpy(),
        "g": g.double().numpy(),
        "log_plan": log_plan.double().numpy(),
    }


def markov_observations(
    num_seq: int, seq_len: int, rng: np.random.Generator, stay_prob: float = 0.95
) -> np.ndarray:
    """Integer observations ``(num_seq, seq_len)`` in ``{0, 1, 2}`` from a 3-state sticky HMM.

    States switch to a uniformly chosen other state with probability ``1 - stay_prob``; the
    emission rows are the paper's "linear" emissions for 3 states and 3 outputs.
    """
    states = 3
    emission = np.array([[0.99, 0.01, 0.0], [0.495, 0.01, 0.495], [0.0, 0.01, 0.99]])
    cum_emission = emission.cumsum(axis=1)
    state = rng.integers(0, states, num_seq)
    obs = np.empty((num_seq, seq_len), dtype=np.int64)
    for t in range(seq_len):
        obs[:, t] = (rng.random(num_seq)[:, None] > cum_emission[state]).sum(axis=1)
        switch = rng.random(num_seq) >= stay_prob
        state = np.where(switch, (state + rng.integers(1, states, num_seq)) % states, state)
    return np.minimum(obs, 2)


def one_hot_flat(obs: np.ndarray, outputs: int) -> np.ndarray:
    """Flattened one-hot float32 ``(num_seq, seq_len * outputs)`` of integer observations."""
    return np.eye(outputs, dtype=np.float32)[obs].reshape(obs.shape[0], -1)
