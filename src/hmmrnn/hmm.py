"""Discrete Hidden Markov Models: parameter generators, fast vectorised sampling, likelihoods.

Conventions (shared by the whole package)
-----------------------------------------
- ``start_prob``: float64 ``(S,)``; ``transition_matrix``: float64 ``(S, S)``, rows are the
  current state; ``emission_matrix``: float64 ``(S, O)``.
- Observations and hidden states: int64 ``(num_seq, seq_len)``; one-hot observations: float32
  ``(num_seq, seq_len, O)``; split labels: int8 ``(num_seq,)`` with 0 = train, 1 = val, 2 = test.

The matrix generators reproduce the parameterisations of Torre et al. (NeurIPS 2025), with two
deliberate differences: rows that the original left unnormalised (``linear`` emissions with
``outputs != 3``) are normalised, and sizes that the original could not handle (one state) either
get the only valid matrix ``[[1]]`` or raise a ``ValueError`` instead of producing an invalid one.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from hmmrnn._utils import SeedLike, as_rng

logger = logging.getLogger("hmmrnn.hmm")

TRANSITION_METHODS = ("stay_prob", "target_prob", "fully")
EMISSION_METHODS = ("linear", "gaussian", "triangular")
SPLIT_NAMES = ("train", "val", "test")
#: Constructor arguments of :class:`HMM`, i.e. the keys of :meth:`HMM.to_dict`.
HMM_PARAMETERS = (
    "states",
    "outputs",
    "stay_prob",
    "target_prob",
    "transition_method",
    "emission_method",
    "start_prob",
    "transition_matrix",
    "emission_matrix",
)

#: Absolute tolerance on row sums of stochastic matrices.
ROW_SUM_ATOL = 1e-8


# --------------------------------------------------------------------------- validation


def _check_positive_int(name: str, value: Any) -> int:
    # bool is an int subclass; True as "1 state" is almost certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


def _check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1] (got {value!r})")
    return float(value)


def _check_method(name: str, value: Any, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}")
    return value


def validate_stochastic(name: str, matrix: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Check that ``matrix`` is a probability vector/matrix of ``shape`` and return it as float64.

    Parameters
    ----------
    name : str
        Name used in error messages, e.g. ``"transition_matrix"``.
    matrix : array_like
        ``(K,)`` probability vector or ``(R, K)`` row-stochastic matrix.
    shape : tuple of int
        Expected shape.

    Returns
    -------
    numpy.ndarray
        A float64 copy of ``matrix`` with shape ``shape``.

    Raises
    ------
    ValueError
        Wrong shape, non-finite or negative entries, or rows not summing to 1 (atol 1e-8).
    """
    try:
        arr = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array of shape {shape} ({err})") from None
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (got shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (got {arr[~np.isfinite(arr)]})")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative (got negative entries {arr[arr < 0]})")
    sums = arr.sum(axis=-1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=ROW_SUM_ATOL):
        what = "rows" if arr.ndim == 2 else "entries"
        raise ValueError(f"{name} {what} must sum to 1 (got sums {sums})")
    return arr


def _check_observations(observations: Any, outputs: int, name: str = "observations") -> np.ndarray:
    obs = np.asarray(observations)
    if obs.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_seq, seq_len) (got shape {obs.shape})")
    if obs.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers (got dtype {obs.dtype})")
    bad = (obs < 0) | (obs >= outputs)
    if np.any(bad):
        raise ValueError(f"{name} must lie in [0, {outputs}) (got values {np.unique(obs[bad])})")
    return obs.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- matrix generators


def uniform_start_prob(states: int) -> np.ndarray:
    """Uniform start distribution, float64 ``(states,)``."""
    states = _check_positive_int("states", states)
    return np.full(states, 1.0 / states)


def stay_prob_transitions(states: int, stay_prob: float) -> np.ndarray:
    """Chain ("line") transition matrix, float64 ``(states, states)``.

    Every state stays with probability ``stay_prob``. The two end states move to their single
    neighbour with ``1 - stay_prob``; interior states move to each neighbour with
    ``(1 - stay_prob) / 2``. One state gives ``[[1]]``.
    """
    states = _check_positive_int("states", states)
    p = _check_probability("stay_prob", stay_prob)
    if states == 1:
        return np.ones((1, 1))
    mat = np.diag(np.full(states, p))
    idx = np.arange(states - 1)
    mat[idx, idx + 1] = (1 - p) / 2
    mat[idx + 1, idx] = (1 - p) / 2
    mat[0, 1] = mat[-1, -2] = 1 - p
    return mat


def target_prob_transitions(states: int, target_prob: float) -> np.ndarray:
    """Chain transition matrix with neighbour-move probability ``q = target_prob ** (1/(S-1))``.

    End states stay with ``1 - q`` and move to their neighbour with ``q``; interior states stay
    with ``1 - 2q`` and move to each neighbour with ``q``. The product of the ``S - 1`` moves
    along the chain is then ``target_prob``. One state gives ``[[1]]``.

    Raises
    ------
    ValueError
        If ``1 - 2q < 0`` for an interior state (e.g. 6 states with ``target_prob=0.05``).
    """
    states = _check_positive_int("states", states)
    t = _check_probability("target_prob", target_prob)
    if states == 1:
        return np.ones((1, 1))
    q = t ** (1.0 / (states - 1))
    if states > 2 and 1 - 2 * q < 0:
        raise ValueError(
            f"target_prob={t} with states={states} gives q = target_prob**(1/{states - 1}) = "
            f"{q:.4f}, so interior states would stay with 1 - 2q = {1 - 2 * q:.3f} < 0; "
            "use fewer states, a smaller target_prob, or another transition_method"
        )
    mat = np.diag(np.full(states, 1 - 2 * q))
    idx = np.arange(states - 1)
    mat[idx, idx + 1] = q
    mat[idx + 1, idx] = q
    mat[0, 0] = mat[-1, -1] = 1 - q
    return mat


def fully_transitions(states: int, stay_prob: float) -> np.ndarray:
    """Fully connected transitions: stay ``stay_prob``, each other state ``(1-p)/(S-1)``."""
    states = _check_positive_int("states", states)
    p = _check_probability("stay_prob", stay_prob)
    if states == 1:
        return np.ones((1, 1))
    mat = np.full((states, states), (1 - p) / (states - 1))
    np.fill_diagonal(mat, p)
    return mat


def linear_emissions(states: int, outputs: int) -> np.ndarray:
    """Linear emission matrix, float64 ``(states, outputs)``.

    State ``i`` has ``a = i / (S - 1)`` (0 when ``S = 1``). With 3 outputs its row is
    ``[0.99 (1 - a), 0.01, 0.99 a]``. With other output counts the row is
    ``linspace(0.99 (1 - a), 0.99 a, outputs)`` **normalised to sum to 1** (the reference
    implementation left these rows unnormalised, i.e. not probability distributions).
    """
    states = _check_positive_int("states", states)
    outputs = _check_positive_int("outputs", outputs)
    a = np.arange(states) / (states - 1) if states > 1 else np.zeros(1)
    first, last = 0.99 * (1 - a), 0.99 * a
    if outputs == 3:
        return np.stack([first, np.full(states, 0.01), last], axis=1)
    mat = np.linspace(first, last, outputs, axis=1)
    return mat / mat.sum(axis=1, keepdims=True)


def gaussian_emissions(states: int, outputs: int) -> np.ndarray:
    """Gaussian-bump emissions, float64 ``(states, outputs)``.

    State centres ``c = linspace(0, outputs - 1, states)``; output ``j`` of state ``i`` has weight
    ``exp(-0.2 * (|j - c_i| / (0.1 (outputs - 1)))**2)``; rows are normalised.

    Raises
    ------
    ValueError
        If ``outputs == 1`` (the width ``0.1 (outputs - 1)`` would be zero).
    """
    states = _check_positive_int("states", states)
    outputs = _check_positive_int("outputs", outputs)
    if outputs < 2:
        raise ValueError(
            f"emission_method 'gaussian' needs outputs >= 2 (got outputs={outputs}): "
            "its width 0.1 * (outputs - 1) would be 0"
        )
    centres = np.linspace(0, outputs - 1, states)
    dist = np.abs(np.arange(outputs)[None, :] - centres[:, None])
    mat = np.exp(-0.2 * (dist / (0.1 * (outputs - 1))) ** 2)
    return mat / mat.sum(axis=1, keepdims=True)


def triangular_emissions(states: int, outputs: int) -> np.ndarray:
    """3 x 3 emissions with 0.98 on the diagonal and 0.01 elsewhere; other sizes raise."""
    states = _check_positive_int("states", states)
    outputs = _check_positive_int("outputs", outputs)
    if (states, outputs) != (3, 3):
        raise ValueError(
            "emission_method 'triangular' needs states=3 and outputs=3 "
            f"(got states={states}, outputs={outputs})"
        )
    mat = np.full((3, 3), 0.01)
    np.fill_diagonal(mat, 0.98)
    return mat


_TRANSITION_GENERATORS = {
    "stay_prob": lambda s, p, t: stay_prob_transitions(s, p),
    "target_prob": lambda s, p, t: target_prob_transitions(s, t),
    "fully": lambda s, p, t: fully_transitions(s, p),
}
_EMISSION_GENERATORS = {
    "linear": linear_emissions,
    "gaussian": gaussian_emissions,
    "triangular": triangular_emissions,
}


def make_transition_matrix(
    method: str, states: int, stay_prob: float = 0.95, target_prob: float = 0.05
) -> np.ndarray:
    """Transition matrix ``(states, states)`` of ``method`` (one of :data:`TRANSITION_METHODS`)."""
    _check_method("transition_method", method, TRANSITION_METHODS)
    return _TRANSITION_GENERATORS[method](states, stay_prob, target_prob)


def make_emission_matrix(method: str, states: int, outputs: int) -> np.ndarray:
    """Emission matrix ``(states, outputs)`` of ``method`` (one of :data:`EMISSION_METHODS`)."""
    _check_method("emission_method", method, EMISSION_METHODS)
    return _EMISSION_GENERATORS[method](states, outputs)


# --------------------------------------------------------------------------- data helpers


def one_hot(observations: Any, outputs: int) -> np.ndarray:
    """One-hot encode integer observations.

    Parameters
    ----------
    observations : array_like of int, shape (num_seq, seq_len)
        Values in ``[0, outputs)``.
    outputs : int
        Number of symbols.

    Returns
    -------
    numpy.ndarray
        float32 ``(num_seq, seq_len, outputs)``.
    """
    outputs = _check_positive_int("outputs", outputs)
    obs = _check_observations(observations, outputs)
    return np.eye(outputs, dtype=np.float32)[obs]


def _check_ratios(ratios: Any) -> tuple[float, float, float]:
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(
            f"ratios must be three non-negative numbers (train, val, test) (got {ratios!r})"
        )
    if not math.isclose(r.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios must sum to 1 (got {ratios!r}, sum {r.sum()})")
    return float(r[0]), float(r[1]), float(r[2])


def split_labels(
    num_seq: int, ratios: Any = (1 / 3, 1 / 3, 1 / 3), rng: SeedLike = None
) -> np.ndarray:
    """Random train/val/test assignment with exact counts.

    ``n_val = floor(num_seq * ratios[1])``, ``n_test = floor(num_seq * ratios[2])`` and the
    remainder goes to train; the labels are then shuffled with ``rng``.

    Parameters
    ----------
    num_seq : int
        Number of sequences.
    ratios : sequence of 3 floats
        Fractions for train, val and test; non-negative, summing to 1.
    rng : int, numpy.random.Generator or None
        Source of randomness.

    Returns
    -------
    numpy.ndarray
        int8 ``(num_seq,)`` with 0 = train, 1 = val, 2 = test.
    """
    num_seq = _check_positive_int("num_seq", num_seq)
    _, r_val, r_test = _check_ratios(ratios)
    # The epsilon keeps float products such as 3 * (1/3) = 0.9999... from losing a sequence.
    n_val = math.floor(num_seq * r_val + 1e-9)
    n_test = math.floor(num_seq * r_test + 1e-9)
    labels = np.repeat(
        np.array([0, 1, 2], dtype=np.int8), [num_seq - n_val - n_test, n_val, n_test]
    )
    return as_rng(rng).permutation(labels)


def _inverse_cdf(matrix: np.ndarray) -> np.ndarray:
    """Cumulative rows whose entries are exactly 1 from each row's last positive probability on.

    Sampling picks ``#{k : cdf[k] <= u}`` for ``u`` in ``[0, 1)``. Forcing the exact 1 makes
    that index never exceed the last positive-probability entry, so float round-off in the
    cumulative sum can neither run past the end nor select a zero-probability symbol.
    """
    cdf = np.cumsum(matrix, axis=-1)
    positive = matrix > 0
    last = matrix.shape[-1] - 1 - np.argmax(positive[..., ::-1], axis=-1)
    cdf[np.arange(matrix.shape[-1]) >= last[..., None]] = 1.0
    return cdf


def _draw(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw from row ``rows`` of ``cdf`` (from :func:`_inverse_cdf`) for each ``u``.

    The index is ``#{k : cdf[row, k] <= u}``, accumulated one column at a time: for the few
    states and symbols of these HMMs this is several times faster than gathering whole rows.
    The last column is exactly 1 > u and never counts, so it is skipped.
    """
    out = np.zeros(rows.shape, dtype=np.int64)
    for k in range(cdf.shape[1] - 1):
        out += u >= cdf[:, k][rows]
    return out


def _equals_generated(matrix: np.ndarray, generate: Any) -> bool:
    try:
        return np.array_equal(matrix, generate())
    except ValueError:  # the method cannot build this size, so the matrix must be custom
        return False


# --------------------------------------------------------------------------- the model


class HMM:
    """A discrete HMM with generated or user-supplied parameters.

    Parameters
    ----------
    states : int
        Number of hidden states ``S``.
    outputs : int
        Number of observation symbols ``O``.
    stay_prob : float
        Self-transition probability for ``transition_method`` ``"stay_prob"`` and ``"fully"``.
    target_prob : float
        End-to-end chain probability for ``transition_method="target_prob"``.
    transition_method : {"stay_prob", "target_prob", "fully"}
        Generator of the transition matrix (see the module functions of the same names).
    emission_method : {"linear", "gaussian", "triangular"}
        Generator of the emission matrix.
    start_prob, transition_matrix, emission_matrix : array_like, optional
        ``(S,)``, ``(S, S)``, ``(S, O)`` probabilities overriding the generated ones. The start
        distribution defaults to uniform.

    Attributes
    ----------
    start_prob : numpy.ndarray, float64 (S,)
    transition_matrix : numpy.ndarray, float64 (S, S)
    emission_matrix : numpy.ndarray, float64 (S, O)
    """

    def __init__(
        self,
        states: int = 3,
        outputs: int = 3,
        stay_prob: float = 0.95,
        target_prob: float = 0.05,
        transition_method: str = "stay_prob",
        emission_method: str = "linear",
        start_prob: Any = None,
        transition_matrix: Any = None,
        emission_matrix: Any = None,
    ) -> None:
        self.states = _check_positive_int("states", states)
        self.outputs = _check_positive_int("outputs", outputs)
        self.stay_prob = _check_probability("stay_prob", stay_prob)
        self.target_prob = _check_probability("target_prob", target_prob)
        self.transition_method = _check_method(
            "transition_method", transition_method, TRANSITION_METHODS
        )
        self.emission_method = _check_method("emission_method", emission_method, EMISSION_METHODS)
        n_s, n_o = self.states, self.outputs
        # Custom matrices are validated before anything is generated so a bad one fails fast.
        if start_prob is not None:
            start_prob = validate_stochastic("start_prob", start_prob, (n_s,))
        if transition_matrix is not None:
            transition_matrix = validate_stochastic(
                "transition_matrix", transition_matrix, (n_s, n_s)
            )
        if emission_matrix is not None:
            emission_matrix = validate_stochastic("emission_matrix", emission_matrix, (n_s, n_o))
        self.start_prob = self.gen_start_prob() if start_prob is None else start_prob
        self.transition_matrix = (
            self.gen_trans_mat() if transition_matrix is None else transition_matrix
        )
        self.emission_matrix = (
            self.gen_emission_prob() if emission_matrix is None else emission_matrix
        )
        logger.debug(
            "%r\ntransition_matrix=\n%s\nemission_matrix=\n%s",
            self,
            self.transition_matrix,
            self.emission_matrix,
        )

    # -- generators (names kept from the reference implementation)

    def gen_start_prob(self) -> np.ndarray:
        """Uniform start distribution, float64 ``(S,)``."""
        return uniform_start_prob(self.states)

    def gen_trans_mat(self) -> np.ndarray:
        """Transition matrix ``(S, S)`` of ``self.transition_method``."""
        return make_transition_matrix(
            self.transition_method, self.states, self.stay_prob, self.target_prob
        )

    def gen_emission_prob(self) -> np.ndarray:
        """Emission matrix ``(S, O)`` of ``self.emission_method``."""
        return make_emission_matrix(self.emission_method, self.states, self.outputs)

    # -- sampling

    def sample(
        self, num_seq: int, seq_len: int, rng: SeedLike = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample sequences by inverse-CDF sampling, vectorised over sequences.

        Two uniform streams are drawn from ``rng``, first ``(num_seq, seq_len)`` for the hidden
        states, then ``(num_seq, seq_len)`` for the emissions, so a seed fixes the result.

        Parameters
        ----------
        num_seq, seq_len : int
            Number and length of sequences.
        rng : int, numpy.random.Generator or None
            Source of randomness.

        Returns
        -------
        observations : numpy.ndarray
            int64 ``(num_seq, seq_len)`` in ``[0, outputs)``.
        states : numpy.ndarray
            int64 ``(num_seq, seq_len)`` in ``[0, states)``.
        """
        num_seq = _check_positive_int("num_seq", num_seq)
        seq_len = _check_positive_int("seq_len", seq_len)
        rng = as_rng(rng)
        u_state = rng.random((num_seq, seq_len))
        u_emit = rng.random((num_seq, seq_len))
        states = np.empty((seq_len, num_seq), dtype=np.int64)  # time-major: rows contiguous
        states[0] = _draw(
            _inverse_cdf(self.start_prob)[None, :], np.zeros(num_seq, np.int64), u_state[:, 0]
        )
        trans_cdf = _inverse_cdf(self.transition_matrix)
        u_state_t = np.ascontiguousarray(u_state.T)
        for t in range(1, seq_len):  # the Markov recurrence is the only sequential part
            states[t] = _draw(trans_cdf, states[t - 1], u_state_t[t])
        states = np.ascontiguousarray(states.T)
        observations = _draw(_inverse_cdf(self.emission_matrix), states, u_emit)
        return observations, states

    def gen_seq(
        self, num_seq: int, seq_len: int, rng: SeedLike = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample sequences and one-hot encode the observations.

        Returns
        -------
        one_hot : numpy.ndarray
            float32 ``(num_seq, seq_len, outputs)``.
        states : numpy.ndarray
            int64 ``(num_seq, seq_len)``.
        """
        observations, states = self.sample(num_seq, seq_len, rng)
        return one_hot(observations, self.outputs), states

    @staticmethod
    def split_data(
        one_hot_sequences: Any,
        sampled_states: Any,
        ratios: Any = (1 / 3, 1 / 3, 1 / 3),
        rng: SeedLike = None,
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Randomly split sequences into train/val/test with :func:`split_labels`.

        Parameters
        ----------
        one_hot_sequences : array_like, shape (N, T, O)
        sampled_states : array_like, shape (N, T)
        ratios : sequence of 3 floats
            Train, val, test fractions.
        rng : int, numpy.random.Generator or None

        Returns
        -------
        dict
            ``{"train": (one_hot, states), "val": (...), "test": (...)}``; within each split the
            sequences keep their original order.
        """
        x = np.asarray(one_hot_sequences)
        s = np.asarray(sampled_states)
        if x.ndim != 3 or s.ndim != 2 or x.shape[:2] != s.shape:
            raise ValueError(
                "one_hot_sequences (N, T, O) and sampled_states (N, T) must agree "
                f"(got shapes {x.shape} and {s.shape})"
            )
        labels = split_labels(x.shape[0], ratios, rng)
        return {name: (x[labels == i], s[labels == i]) for i, name in enumerate(SPLIT_NAMES)}

    # -- likelihood

    def log_likelihood(self, observations: Any) -> np.ndarray:
        """Log-probability of each observation sequence (scaled forward algorithm).

        Parameters
        ----------
        observations : array_like of int, shape (N, T)

        Returns
        -------
        numpy.ndarray
            float64 ``(N,)``; ``-inf`` for sequences of probability 0.
        """
        obs = _check_observations(observations, self.outputs)
        emit = self.emission_matrix.T  # (O, S): row o gives P(o | state)
        loglik = np.zeros(obs.shape[0])
        alpha = np.broadcast_to(self.start_prob, (obs.shape[0], self.states))
        with np.errstate(divide="ignore", invalid="ignore"):
            for t in range(obs.shape[1]):
                if t > 0:
                    alpha = alpha @ self.transition_matrix
                alpha = alpha * emit[obs[:, t]]
                # Rescaling every step keeps alpha in range; the log scales add up to log P.
                scale = alpha.sum(axis=1)
                loglik += np.log(scale)
                alpha = np.where(scale[:, None] > 0, alpha / scale[:, None], 0.0)
        return loglik

    # -- serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters: every constructor argument, matrices as nested lists."""
        return {
            "states": self.states,
            "outputs": self.outputs,
            "stay_prob": self.stay_prob,
            "target_prob": self.target_prob,
            "transition_method": self.transition_method,
            "emission_method": self.emission_method,
            "start_prob": self.start_prob.tolist(),
            "transition_matrix": self.transition_matrix.tolist(),
            "emission_matrix": self.emission_matrix.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HMM:
        """Rebuild an HMM from :meth:`to_dict` output (matrices are taken as given)."""
        if not isinstance(d, dict):
            raise ValueError(f"HMM.from_dict needs a dict (got {type(d).__name__})")
        unknown = sorted(set(d) - set(HMM_PARAMETERS))
        if unknown:
            raise ValueError(f"unknown HMM parameters {unknown}; valid: {list(HMM_PARAMETERS)}")
        return cls(**d)

    def __repr__(self) -> str:
        custom = [
            name
            for name, generate in [
                ("start_prob", self.gen_start_prob),
                ("transition_matrix", self.gen_trans_mat),
                ("emission_matrix", self.gen_emission_prob),
            ]
            if not _equals_generated(getattr(self, name), generate)
        ]
        custom = f", custom={custom}" if custom else ""
        return (
            f"HMM(states={self.states}, outputs={self.outputs}, "
            f"transition_method={self.transition_method!r}, stay_prob={self.stay_prob}, "
            f"target_prob={self.target_prob}, emission_method={self.emission_method!r}{custom})"
        )
