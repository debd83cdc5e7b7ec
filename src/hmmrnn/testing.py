"""Compare HMM and RNN samples: matched Euclidean distances, summary statistics and fidelity.

:func:`compare` is the pure entry point on observation arrays; :class:`Test` (alias ``TEST``)
keeps the reference interface and draws the samples itself. Results are a :class:`TestResults`,
saved as a JSON summary plus a tidy parquet table of the per-sequence arrays.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from hmmrnn import metrics
from hmmrnn._utils import atomic_path, read_json, torch_generator, write_json

logger = logging.getLogger("hmmrnn.testing")

__all__ = ["TEST", "Test", "TestResults", "compare"]

SCHEMA = "hmmrnn.test_results/1"

# Matcher: (obs_x (n, T), obs_y (m, T)) -> object with index (m,) into obs_x, distinct_fraction,
# n_iter, converged (e.g. hmmrnn.sinkhorn.MatchResult).
Matcher = Callable[[np.ndarray, np.ndarray], Any]

_ARRAY_FIELDS = {
    "distances_hmm",
    "distances_rnn",
    "volatilities_hmm",
    "volatilities_rnn",
    "frequencies_hmm",
    "frequencies_rnn",
    "transition_hmm",
    "transition_hmm_b",
    "transition_rnn",
    "run_length_hist_hmm",
    "run_length_hist_rnn",
    "run_length_tv_rnn",
    "run_length_tv_floor",
}
# Per-sequence arrays go to parquet; everything else to JSON.
_PARQUET_FIELDS = {
    # field: (quantity, source)
    "distances_hmm": ("distance", "hmm_vs_hmm"),
    "distances_rnn": ("distance", "hmm_vs_rnn"),
    "volatilities_hmm": ("volatility", "hmm"),
    "volatilities_rnn": ("volatility", "rnn"),
    "frequencies_hmm": ("frequency", "hmm"),
    "frequencies_rnn": ("frequency", "rnn"),
}


@dataclass(eq=False)
class TestResults:
    """Everything measured when comparing an HMM with an RNN.

    "hmm" refers to HMM sample set A (the reference), "hmm_b" to the independent set B that
    gives the sampling floor, "rnn" to the RNN samples.

    Attributes
    ----------
    outputs : int
        Number of output symbols ``O``.
    distances_hmm : float64 (N_b,)
        Euclidean distance of each sequence of HMM set B to its matched sequence of set A.
    distances_rnn : float64 (N_rnn,)
        Same for each RNN sequence against set A.
    match_hmm, match_rnn : dict
        Matching diagnostics ``{"distinct_fraction", "n_iter", "converged"}``.
    volatilities_hmm, volatilities_rnn : int64 (N,)
        Output changes per sequence (set A / RNN).
    frequencies_hmm, frequencies_rnn : float64 (N, O)
        Per-sequence output frequencies.
    transition_hmm, transition_hmm_b, transition_rnn : float64 (O, O)
        Pooled output transition matrices (NaN rows for outputs never followed by a step).
    kgram_tv : dict
        ``{k: {"rnn": TV(rnn, A), "floor": TV(B, A)}}`` for k = 1..max_kgram.
    run_length_hist_hmm, run_length_hist_rnn : int64 (O, T + 1)
        Dwell-time histograms, ``hist[o, L]`` = number of runs of output o of length L.
    run_length_tv_rnn, run_length_tv_floor : float64 (O,)
        Per-output dwell-time TV of RNN vs A and of B vs A.
    loglik_per_step_hmm, loglik_per_step_rnn : float or None
        Mean HMM log-likelihood per step of set A and of the RNN samples (None without HMM).
    meta : dict
        JSON-able provenance (sizes, seed, matching parameters...).
    """

    __test__ = False  # keep pytest from collecting this class

    outputs: int
    distances_hmm: np.ndarray
    distances_rnn: np.ndarray
    match_hmm: dict
    match_rnn: dict
    volatilities_hmm: np.ndarray
    volatilities_rnn: np.ndarray
    frequencies_hmm: np.ndarray
    frequencies_rnn: np.ndarray
    transition_hmm: np.ndarray
    transition_hmm_b: np.ndarray
    transition_rnn: np.ndarray
    kgram_tv: dict
    run_length_hist_hmm: np.ndarray
    run_length_hist_rnn: np.ndarray
    run_length_tv_rnn: np.ndarray
    run_length_tv_floor: np.ndarray
    loglik_per_step_hmm: float | None = None
    loglik_per_step_rnn: float | None = None
    meta: dict = field(default_factory=dict)

    # -- derived quantities

    @property
    def euclidean_gap(self) -> float:
        """``(mean HMM-RNN distance - mean HMM-HMM distance) / mean HMM-HMM distance``."""
        base = float(np.mean(self.distances_hmm))
        diff = float(np.mean(self.distances_rnn)) - base
        if base == 0:
            return 0.0 if diff == 0 else math.inf
        return diff / base

    @property
    def euclidean_gap_se(self) -> float:
        """Standard error of :attr:`euclidean_gap` from the spread of the matched distances.

        The delta-method error of the ratio of two independent means,
        ``sqrt(var_rnn / n_rnn + R**2 var_hmm / n_hmm) / mean_hmm`` with ``R`` the ratio of the
        means. A perfect emulator scores a gap within about 2 of these of 0, so a gap target
        tighter than that cannot be met reliably at this number of test sequences. NaN with
        fewer than 2 distances in a set.
        """
        d_hmm, d_rnn = np.asarray(self.distances_hmm), np.asarray(self.distances_rnn)
        if len(d_hmm) < 2 or len(d_rnn) < 2:
            return math.nan
        base, mean = float(np.mean(d_hmm)), float(np.mean(d_rnn))
        var = np.var(d_rnn, ddof=1) / len(d_rnn)
        if base == 0:
            return 0.0 if mean == 0 else math.inf  # as the gap (distances are >= 0)
        var += (mean / base) ** 2 * np.var(d_hmm, ddof=1) / len(d_hmm)
        return float(math.sqrt(var)) / base

    @property
    def transition_sq_diff(self) -> np.ndarray:
        """``(transition_hmm - transition_rnn) ** 2``, shape (O, O)."""
        return metrics.transition_sq_diff(self.transition_hmm, self.transition_rnn)

    def summary(self) -> dict[str, float | None]:
        """Flat dict of scalar metrics (JSON-able; NaN where undefined)."""
        sq = self.transition_sq_diff
        sq_floor = metrics.transition_sq_diff(self.transition_hmm, self.transition_hmm_b)
        out: dict[str, Any] = {
            "distance_mean_hmm": float(np.mean(self.distances_hmm)),
            "distance_std_hmm": float(np.std(self.distances_hmm)),
            "distance_mean_rnn": float(np.mean(self.distances_rnn)),
            "distance_std_rnn": float(np.std(self.distances_rnn)),
            "euclidean_gap": self.euclidean_gap,
            "euclidean_gap_se": self.euclidean_gap_se,
            "distinct_fraction_hmm": _opt_float(self.match_hmm.get("distinct_fraction")),
            "distinct_fraction_rnn": _opt_float(self.match_rnn.get("distinct_fraction")),
            "volatility_mean_hmm": float(np.mean(self.volatilities_hmm)),
            "volatility_std_hmm": float(np.std(self.volatilities_hmm)),
            "volatility_mean_rnn": float(np.mean(self.volatilities_rnn)),
            "volatility_std_rnn": float(np.std(self.volatilities_rnn)),
            "transition_sq_diff_max": _nanmax(sq),
            "transition_sq_diff_max_floor": _nanmax(sq_floor),
        }
        for k, v in sorted(self.kgram_tv.items()):
            out[f"kgram_tv_k{k}_rnn"] = float(v["rnn"])
            out[f"kgram_tv_k{k}_floor"] = float(v["floor"])
        out["run_length_tv_mean_rnn"] = float(np.mean(self.run_length_tv_rnn))
        out["run_length_tv_mean_floor"] = float(np.mean(self.run_length_tv_floor))
        out["loglik_per_step_hmm"] = self.loglik_per_step_hmm
        out["loglik_per_step_rnn"] = self.loglik_per_step_rnn
        if self.loglik_per_step_hmm is not None and self.loglik_per_step_rnn is not None:
            out["loglik_per_step_gap"] = self.loglik_per_step_rnn - self.loglik_per_step_hmm
        return out

    def frequency_stats(self) -> dict[str, dict[str, np.ndarray]]:
        """``{"hmm"|"rnn": {"mean": (O,), "std": (O,)}}`` over sequences."""
        return {
            "hmm": {"mean": self.frequencies_hmm.mean(0), "std": self.frequencies_hmm.std(0)},
            "rnn": {"mean": self.frequencies_rnn.mean(0), "std": self.frequencies_rnn.std(0)},
        }

    # -- serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: scalars, per-output statistics and matrices (no per-sequence data).

        Non-finite floats are encoded as None (NaN) or the strings "inf"/"-inf" so the file
        stays strict JSON.
        """
        freq = self.frequency_stats()
        d = {
            "schema": SCHEMA,
            "outputs": self.outputs,
            "summary": self.summary(),
            "match": {"hmm_vs_hmm": self.match_hmm, "hmm_vs_rnn": self.match_rnn},
            "frequencies": {src: {k: v for k, v in s.items()} for src, s in freq.items()},
            "transitions": {
                "hmm": self.transition_hmm,
                "hmm_b": self.transition_hmm_b,
                "rnn": self.transition_rnn,
                "sq_diff": self.transition_sq_diff,
            },
            "kgram_tv": {str(k): dict(v) for k, v in sorted(self.kgram_tv.items())},
            "run_lengths": {
                "hist_hmm": self.run_length_hist_hmm,
                "hist_rnn": self.run_length_hist_rnn,
                "tv_rnn": self.run_length_tv_rnn,
                "tv_floor": self.run_length_tv_floor,
            },
            "loglik_per_step": {"hmm": self.loglik_per_step_hmm, "rnn": self.loglik_per_step_rnn},
            "meta": self.meta,
        }
        return _encode(d)

    def to_frame(self):
        """Per-sequence arrays as a tidy ``pandas.DataFrame``.

        Columns: ``quantity`` ("distance", "volatility", "frequency"), ``source``
        ("hmm_vs_hmm", "hmm_vs_rnn" for distances; "hmm", "rnn" otherwise), ``sequence``,
        ``output`` (-1 unless quantity is "frequency") and ``value`` (float64).
        """
        import pandas as pd

        parts = []
        for name, (quantity, source) in _PARQUET_FIELDS.items():
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim == 1:
                seq, out, val = np.arange(len(arr)), np.full(len(arr), -1), arr
            else:
                seq, out = np.indices(arr.shape).reshape(2, -1)
                val = arr.ravel()
            parts.append(
                pd.DataFrame(
                    {
                        "quantity": quantity,
                        "source": source,
                        "sequence": seq.astype(np.int64),
                        "output": out.astype(np.int64),
                        "value": val,
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    def save(self, json_path: str | os.PathLike, parquet_path: str | os.PathLike) -> None:
        """Write the JSON summary and the per-sequence parquet table, each atomically."""
        frame = self.to_frame()
        with atomic_path(parquet_path) as tmp:
            frame.to_parquet(tmp, engine="pyarrow", index=False)
        write_json(json_path, self.to_dict())

    @classmethod
    def load(cls, json_path: str | os.PathLike, parquet_path: str | os.PathLike) -> TestResults:
        """Read results written by :meth:`save`."""
        import pandas as pd

        d = read_json(json_path)
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{json_path} is not a {SCHEMA} file (schema {got!r})")
        frame = pd.read_parquet(parquet_path, engine="pyarrow")
        missing = {"quantity", "source", "sequence", "output", "value"} - set(frame.columns)
        if missing:
            raise ValueError(f"{parquet_path} lacks columns {sorted(missing)}")
        outputs = int(d["outputs"])
        arrays = {}
        for name, (quantity, source) in _PARQUET_FIELDS.items():
            sub = frame[(frame["quantity"] == quantity) & (frame["source"] == source)]
            sub = sub.sort_values(["sequence", "output"], kind="stable")
            val = sub["value"].to_numpy(dtype=np.float64)
            if quantity == "frequency":
                val = val.reshape(-1, outputs)
            elif quantity == "volatility":
                val = val.astype(np.int64)
            arrays[name] = val
        tr, rl = d["transitions"], d["run_lengths"]
        ll = d["loglik_per_step"]
        return cls(
            outputs=outputs,
            match_hmm=d["match"]["hmm_vs_hmm"],
            match_rnn=d["match"]["hmm_vs_rnn"],
            transition_hmm=_decode_array(tr["hmm"]),
            transition_hmm_b=_decode_array(tr["hmm_b"]),
            transition_rnn=_decode_array(tr["rnn"]),
            kgram_tv={
                int(k): {s: _decode_float(x) for s, x in v.items()}
                for k, v in d["kgram_tv"].items()
            },
            run_length_hist_hmm=np.asarray(rl["hist_hmm"], dtype=np.int64),
            run_length_hist_rnn=np.asarray(rl["hist_rnn"], dtype=np.int64),
            run_length_tv_rnn=_decode_array(rl["tv_rnn"]),
            run_length_tv_floor=_decode_array(rl["tv_floor"]),
            loglik_per_step_hmm=_decode_float(ll["hmm"]),
            loglik_per_step_rnn=_decode_float(ll["rnn"]),
            meta=d.get("meta", {}),
            **arrays,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TestResults):
            return NotImplemented
        return all(_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _nanmax(a: np.ndarray) -> float:
    return float(np.nanmax(a)) if np.isfinite(a).any() else math.nan


def _encode(obj: Any) -> Any:
    """Convert numpy values to JSON-able Python, non-finite floats to None / "inf" / "-inf"."""
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _encode(obj.tolist())
    if isinstance(obj, np.generic):
        return _encode(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _decode_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _decode_array(x: Any) -> np.ndarray:
    return np.array(x, dtype=np.float64)  # None -> nan, "inf" -> inf


# -- comparison


def _outputs_of(hmm: Any, outputs: int | None) -> int:
    if outputs is not None:
        return int(outputs)
    emission = getattr(hmm, "emission_matrix", None)
    if emission is None:
        raise ValueError("outputs must be given when no HMM (with an emission_matrix) is passed")
    return int(np.shape(emission)[1])


def sinkhorn_matcher(
    outputs: int, epsilon: float = 0.1, max_iter: int = 1000, tol: float = 0.1
) -> Matcher:
    """Matcher based on :func:`hmmrnn.sinkhorn.match_sequences` (one-hot Sinkhorn transport)."""
    from hmmrnn.sinkhorn import match_sequences

    def match(obs_x: np.ndarray, obs_y: np.ndarray):
        return match_sequences(obs_x, obs_y, outputs, epsilon=epsilon, max_iter=max_iter, tol=tol)

    return match


def _match_info(result: Any) -> dict[str, Any]:
    return {
        "distinct_fraction": _opt_float(getattr(result, "distinct_fraction", None)),
        "n_iter": None if getattr(result, "n_iter", None) is None else int(result.n_iter),
        "converged": None if getattr(result, "converged", None) is None else bool(result.converged),
    }


def compare(
    hmm: Any,
    obs_hmm_a: Any,
    obs_hmm_b: Any,
    obs_rnn: Any,
    outputs: int | None = None,
    *,
    epsilon: float = 0.1,
    max_iter: int = 1000,
    tol: float = 0.1,
    max_kgram: int = 4,
    matcher: Matcher | None = None,
    meta: dict | None = None,
) -> TestResults:
    """Compare RNN samples with HMM samples given as observation arrays.

    Parameters
    ----------
    hmm : hmmrnn.hmm.HMM or None
        Used for log-likelihoods (and ``outputs`` when not given); None skips likelihoods.
    obs_hmm_a : array_like of int, shape (N, T)
        Reference HMM samples; both other sets are matched to it.
    obs_hmm_b : array_like of int, shape (N, T)
        Independent HMM samples giving the sampling floor of every measure.
    obs_rnn : array_like of int, shape (N, T)
        RNN samples. Sets B and RNN should have the same size for floors to be comparable.
    outputs : int, optional
        Number of output symbols; taken from ``hmm.emission_matrix`` when None.
    epsilon, max_iter, tol : float, int, float
        Sinkhorn matching parameters (see :class:`hmmrnn.sinkhorn.Sinkhorn`).
    max_kgram : int
        Largest k of the k-gram TV profile.
    matcher : callable, optional
        ``matcher(obs_x, obs_y)`` returning an object with ``index`` (rows of ``obs_x``
        matched to each row of ``obs_y``), ``distinct_fraction``, ``n_iter``, ``converged``;
        defaults to Sinkhorn matching.
    meta : dict, optional
        Extra JSON-able provenance stored in the results.

    Returns
    -------
    TestResults
    """
    outputs = _outputs_of(hmm, outputs)
    a = metrics.check_observations(obs_hmm_a, outputs, "obs_hmm_a")
    b = metrics.check_observations(obs_hmm_b, outputs, "obs_hmm_b")
    r = metrics.check_observations(obs_rnn, outputs, "obs_rnn")
    if not a.shape[1] == b.shape[1] == r.shape[1]:
        raise ValueError(
            "all observation sets must have the same seq_len "
            f"(got hmm_a {a.shape}, hmm_b {b.shape}, rnn {r.shape})"
        )
    if len(b) != len(r):
        logger.warning(
            "HMM set B has %d sequences and the RNN set %d: floors are not directly comparable",
            len(b),
            len(r),
        )
    if matcher is None:
        matcher = sinkhorn_matcher(outputs, epsilon=epsilon, max_iter=max_iter, tol=tol)

    logger.info("matching HMM set B (%d) and RNN (%d) sequences to HMM set A", len(b), len(r))
    m_hmm, m_rnn = matcher(a, b), matcher(a, r)
    dist_hmm = metrics.matched_one_hot_distances(a, b, np.asarray(m_hmm.index))
    dist_rnn = metrics.matched_one_hot_distances(a, r, np.asarray(m_rnn.index))

    hist_a, hist_r = metrics.run_lengths(a, outputs), metrics.run_lengths(r, outputs)
    loglik_a = loglik_r = None
    if hmm is not None and hasattr(hmm, "log_likelihood"):
        loglik_a = metrics.mean_loglik_per_step(hmm, a)
        loglik_r = metrics.mean_loglik_per_step(hmm, r)
    info = {
        "num_seq": {"hmm_a": len(a), "hmm_b": len(b), "rnn": len(r)},
        "seq_len": int(a.shape[1]),
        "epsilon": epsilon,
        "max_iter": max_iter,
        "tol": tol,
        "max_kgram": max_kgram,
    }
    info.update(meta or {})
    results = TestResults(
        outputs=outputs,
        distances_hmm=dist_hmm,
        distances_rnn=dist_rnn,
        match_hmm=_match_info(m_hmm),
        match_rnn=_match_info(m_rnn),
        volatilities_hmm=metrics.volatilities(a),
        volatilities_rnn=metrics.volatilities(r),
        frequencies_hmm=metrics.frequencies(a, outputs),
        frequencies_rnn=metrics.frequencies(r, outputs),
        transition_hmm=metrics.transition_matrix(a, outputs),
        transition_hmm_b=metrics.transition_matrix(b, outputs),
        transition_rnn=metrics.transition_matrix(r, outputs),
        kgram_tv=metrics.kgram_tv_profile(r, a, b, outputs, max_k=min(max_kgram, a.shape[1])),
        run_length_hist_hmm=np.stack([hist_a[o] for o in range(outputs)]),
        run_length_hist_rnn=np.stack([hist_r[o] for o in range(outputs)]),
        run_length_tv_rnn=metrics.run_length_tv(r, a, outputs),
        run_length_tv_floor=metrics.run_length_tv(b, a, outputs),
        loglik_per_step_hmm=loglik_a,
        loglik_per_step_rnn=loglik_r,
        meta=_encode(info),
    )
    s = results.summary()
    logger.info(
        "distance HMM-HMM %.3f, HMM-RNN %.3f (gap %+.3f +- %.3f); k=%d TV rnn %.4f floor %.4f",
        s["distance_mean_hmm"],
        s["distance_mean_rnn"],
        s["euclidean_gap"],
        s["euclidean_gap_se"],
        max(results.kgram_tv),
        results.kgram_tv[max(results.kgram_tv)]["rnn"],
        results.kgram_tv[max(results.kgram_tv)]["floor"],
    )
    return results


def _as_observations(seq: Any, outputs: int | None = None) -> np.ndarray:
    """Observation array from observations (N, T) or one-hot / probabilities (N, T, O)."""
    arr = seq.detach().cpu().numpy() if hasattr(seq, "detach") else np.asarray(seq)
    if arr.ndim == 3:
        arr = arr.argmax(axis=-1)
    return metrics.check_observations(arr, outputs, "seq")


class Test:
    """Sample an HMM and an RNN and compare them (reference interface; alias ``TEST``).

    Parameters
    ----------
    hmm : hmmrnn.hmm.HMM or None
        Source of the two HMM sample sets A and B (None if they are passed to :meth:`run_all`).
    rnn : hmmrnn.rnn.RNN, hmmrnn.model.NoiseRNN or None
        Source of the RNN samples (None if they are passed to :meth:`run_all`).
    num_seq, seq_len : int
        Size of each sample set.
    outputs : int, optional
        Number of output symbols; from ``hmm.emission_matrix`` when None.
    seed : int
        Seeds the three sample sets (independent streams spawned from it).
    epsilon, max_iter, tol : float, int, float
        Sinkhorn matching parameters.
    max_kgram : int
        Largest k of the k-gram TV profile.
    dynamics_mode : str
        RNN dynamics used for generation (see :func:`hmmrnn.model.generate`).
    tau : float
        Gumbel-softmax temperature of RNN generation.
    matcher : callable, optional
        Replaces Sinkhorn matching (see :func:`compare`).
    """

    __test__ = False  # keep pytest from collecting this class

    def __init__(
        self,
        hmm: Any,
        rnn: Any,
        num_seq: int = 1000,
        seq_len: int = 100,
        outputs: int | None = None,
        *,
        seed: int = 0,
        epsilon: float = 0.1,
        max_iter: int = 1000,
        tol: float = 0.1,
        max_kgram: int = 4,
        dynamics_mode: str = "full",
        tau: float = 1.0,
        matcher: Matcher | None = None,
    ) -> None:
        for name, value in (("num_seq", num_seq), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer (got {value!r})")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
        self.hmm = hmm
        self.rnn = rnn
        self.num_seq = int(num_seq)
        self.seq_len = int(seq_len)
        self.outputs = _outputs_of(hmm, outputs)
        self.seed = int(seed)
        self.epsilon, self.max_iter, self.tol = epsilon, max_iter, tol
        self.max_kgram = max_kgram
        self.dynamics_mode = dynamics_mode
        self.tau = tau
        self.matcher = matcher
        self.obs_hmm_a = self.obs_hmm_b = self.obs_rnn = None

    def _streams(self) -> list[np.random.SeedSequence]:
        return np.random.SeedSequence(self.seed).spawn(3)

    def _sample_hmm(self, stream: np.random.SeedSequence) -> np.ndarray:
        if self.hmm is None:
            raise ValueError("no HMM given: pass HMM observations to run_all instead")
        obs, _ = self.hmm.sample(self.num_seq, self.seq_len, rng=np.random.default_rng(stream))
        return obs

    def _sample_rnn(self, stream: np.random.SeedSequence) -> np.ndarray:
        if self.rnn is None:
            raise ValueError("no RNN given: pass RNN observations to run_all instead")
        from hmmrnn.model import generate

        module = getattr(self.rnn, "module", self.rnn)
        device = next(module.parameters()).device
        gen = torch_generator(int(stream.generate_state(1)[0]), device)
        out = generate(
            module,
            self.num_seq,
            self.seq_len,
            tau=self.tau,
            dynamics_mode=self.dynamics_mode,
            generator=gen,
            return_hidden=False,
        )
        return out.observations

    def gen_test_data(
        self, obs_hmm_a: Any = None, obs_hmm_b: Any = None, obs_rnn: Any = None
    ) -> dict[str, np.ndarray]:
        """Draw HMM sets A and B and the RNN set; given arrays are used instead of drawing.

        Returns
        -------
        dict
            ``{"hmm_a": (N, T), "hmm_b": (N, T), "rnn": (N, T)}`` int64 observations, also
            kept as ``self.obs_hmm_a``, ``self.obs_hmm_b``, ``self.obs_rnn``.
        """
        sa, sb, sr = self._streams()
        given = {"hmm_a": obs_hmm_a, "hmm_b": obs_hmm_b, "rnn": obs_rnn}
        draw = {"hmm_a": lambda: self._sample_hmm(sa), "hmm_b": lambda: self._sample_hmm(sb)}
        draw["rnn"] = lambda: self._sample_rnn(sr)
        data = {}
        for key, value in given.items():
            if value is None:
                logger.info(
                    "generating %d %s sequences of length %d", self.num_seq, key, self.seq_len
                )
                value = draw[key]()
            data[key] = _as_observations(value, self.outputs)
        self.obs_hmm_a, self.obs_hmm_b, self.obs_rnn = data["hmm_a"], data["hmm_b"], data["rnn"]
        return data

    def _matcher(self) -> Matcher:
        if self.matcher is not None:
            return self.matcher
        return sinkhorn_matcher(self.outputs, self.epsilon, self.max_iter, self.tol)

    def match(self, seq1: Any, seq2: Any):
        """Match each sequence of ``seq2`` to one of ``seq1`` (observations or one-hot).

        Returns
        -------
        MatchResult
            ``index`` (len(seq2),) into ``seq1`` and matching diagnostics.
        """
        return self._matcher()(
            _as_observations(seq1, self.outputs), _as_observations(seq2, self.outputs)
        )

    def _require_data(self) -> None:
        if self.obs_hmm_a is None:
            raise ValueError("no test data yet: call gen_test_data() first")

    def euclidean_distances(self) -> dict[str, np.ndarray]:
        """Distances of matched pairs: HMM set B to A (baseline) and RNN to A.

        Returns
        -------
        dict
            ``{"hmm_distances": (N,), "rnn_distances": (N,)}`` float64.
        """
        self._require_data()
        out = {}
        for key, obs in (("hmm_distances", self.obs_hmm_b), ("rnn_distances", self.obs_rnn)):
            index = np.asarray(self.match(self.obs_hmm_a, obs).index)
            out[key] = metrics.matched_one_hot_distances(self.obs_hmm_a, obs, index)
        return out

    def volatilities(self, seq: Any) -> tuple[float, float]:
        """Mean and std over sequences of the number of output changes."""
        return metrics.volatility_stats(_as_observations(seq, self.outputs))

    def frequencies(self, seq: Any) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std over sequences of the output frequencies, each (outputs,)."""
        return metrics.frequency_stats(_as_observations(seq, self.outputs), self.outputs)

    def transition_matrices(self, seq: Any) -> np.ndarray:
        """Pooled output transition matrix (outputs, outputs); see metrics.transition_matrix."""
        return metrics.transition_matrix(_as_observations(seq, self.outputs), self.outputs)

    def run_all(
        self, obs_hmm_a: Any = None, obs_hmm_b: Any = None, obs_rnn: Any = None
    ) -> TestResults:
        """Generate the missing sample sets and compute every measure (see :func:`compare`)."""
        data = self.gen_test_data(obs_hmm_a, obs_hmm_b, obs_rnn)
        return compare(
            self.hmm,
            data["hmm_a"],
            data["hmm_b"],
            data["rnn"],
            self.outputs,
            epsilon=self.epsilon,
            max_iter=self.max_iter,
            tol=self.tol,
            max_kgram=self.max_kgram,
            matcher=self._matcher(),
            meta={"seed": self.seed, "dynamics_mode": self.dynamics_mode, "tau": self.tau},
        )

    def gen_plots(
        self, results: TestResults, save_path: str | os.PathLike, *, dpi: float | None = None
    ) -> list[Path]:
        """Write the comparison PDFs (``hmmrnn.plots.FILENAMES``) into directory ``save_path``."""
        from hmmrnn import plots

        return plots.save_all(results, Path(save_path), dpi=dpi)


TEST = Test
