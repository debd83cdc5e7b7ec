"""The training loss: geomloss's Sinkhorn divergence, with a fused soft-min kernel on the CPU.

geomloss's ``tensorized`` backend spends almost all of a training step in its soft-min
``-eps * logsumexp(h_j - C_ij / eps)``, which eager torch evaluates in six or more passes over
an (N, M) matrix (about 180 ms for 4096 x 4096 on 2 cores). :class:`SinkhornLoss` runs
geomloss's own Sinkhorn loop (epsilon schedule, symmetric updates, debiasing, final
extrapolation, cost formula) with that soft-min compiled into one pass by ``torch.compile``
(about 10 ms), so the loss and its gradient are geomloss's to float rounding while a step at
batch 4096 is several times faster. Elsewhere (CUDA, other losses or backends, small batches,
no C++ compiler) it simply calls ``geomloss.SamplesLoss``.

``estimator="halves"`` changes what is estimated from a pair of minibatches. geomloss's
debiased divergence compares each minibatch with itself in its self terms, so two independent
samples of the *same* distribution score well above zero, and a model scores lower by
concentrating its samples (an RNN trained on it emulates an HMM with too little
variability). The halves estimator splits each batch into two independent halves and takes
the mean of the four model-data terms minus the model-model and data-data terms, each between
different halves: zero in expectation when the model matches the data (the mini-batch energy
distance of Salimans et al., 2018, with Sinkhorn costs).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from hmmrnn._utils import check_choice

__all__ = ["ESTIMATORS", "KGramPenalty", "SinkhornLoss", "check_estimator", "switch_pair_rates"]

logger = logging.getLogger("hmmrnn.loss")

ESTIMATORS = ("batch", "halves")


def check_estimator(estimator: str, loss: str, debias: bool) -> str:
    """``estimator`` if it is known and fits the loss settings, else a ValueError."""
    check_choice("estimator", estimator, ESTIMATORS)
    if estimator == "halves" and not (loss == "sinkhorn" and debias):
        raise ValueError(
            f"estimator 'halves' needs loss 'sinkhorn' with debias=True "
            f"(got loss {loss!r}, debias={debias!r})"
        )
    return estimator


# A k-gram penalty keeps (outputs ** k) frequencies per k; beyond this many it would be
# mostly empty cells and its memory would grow without bound.
MAX_KGRAMS = 1 << 20
# The expected penalty (probabilities=True) materialises every k-gram's product form at every
# window of a minibatch; 2**27 float32 values are 512 MiB before autograd keeps intermediates.
MAX_EXPECTED_KGRAM_VALUES = 1 << 27

# Below this many point pairs (N * M) the eager soft-min is already fast and compiling
# (a few seconds once per process) would not pay for itself.
_FUSED_MIN_PAIRS = 256 * 256
_COMPILED: dict[str, Any] = {}


def _one_point(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether every point of both clouds (N, D), (M, D) is the same point."""
    first = x[:1]
    return bool((x == first).all() and (y == first).all())


def _softmin(eps: torch.Tensor, cost: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    # cost (B, N, M), h (B, M) -> (B, N); written as geomloss writes it so that the compiler
    # fuses exactly the same arithmetic.
    return -eps * (h.unsqueeze(1) - cost / eps).logsumexp(2)


def _compiled_softmin():
    """The compiled soft-min, or None where ``torch.compile`` does not work (checked once)."""
    if "softmin" not in _COMPILED:
        fn = None
        try:
            candidate = torch.compile(_softmin, dynamic=True)
            # Compile errors surface on the first call: try a tiny problem, with a gradient.
            c = torch.zeros((1, 3, 5), requires_grad=True)
            candidate(torch.tensor(1.0), c, torch.zeros((1, 5))).sum().backward()
            fn = candidate
        except Exception as err:  # no C++ compiler, unsupported platform, ...
            logger.warning("torch.compile unavailable (%s); using geomloss's own kernels", err)
        _COMPILED["softmin"] = fn
    return _COMPILED["softmin"]


def _geomloss_modules():
    """geomloss's Sinkhorn building blocks (module layout of geomloss 0.3 and of 0.2)."""
    try:
        from geomloss._legacy import sinkhorn_divergence, sinkhorn_samples
    except ImportError:
        from geomloss import sinkhorn_divergence, sinkhorn_samples
    return sinkhorn_divergence, sinkhorn_samples


class SinkhornLoss:
    """Sinkhorn divergence between two equally weighted point clouds (a training criterion).

    Equivalent to ``geomloss.SamplesLoss(loss, p=p, blur=blur, scaling=scaling,
    debias=debias, backend=backend)``; for the tensorized Sinkhorn divergence on the CPU the
    soft-min kernel is compiled (see the module docstring).

    Parameters
    ----------
    loss, p, blur, scaling, debias, backend
        Arguments of ``geomloss.SamplesLoss``.
    fused : bool
        Allow the compiled soft-min (CPU, ``loss="sinkhorn"``, ``backend="tensorized"``,
        at least 65536 point pairs). False always calls geomloss.
    estimator : {"batch", "halves"}
        ``"batch"``: the divergence between the two clouds (geomloss). ``"halves"`` (Sinkhorn
        with ``debias=True`` only): with ``x1, x2`` and ``y1, y2`` the first and second
        halves of each cloud (an odd last point is left out) and ``OT`` the entropic
        transport cost without debiasing,
        ``mean(OT(xi, yj) for i, j in {1, 2}) - (OT(x1, x2) + OT(y1, y2)) / 2``;
        zero in expectation when both clouds are samples of one distribution, and negative
        by chance as often as positive.

    Call with ``x`` of shape (N, D) and ``y`` of shape (M, D); returns a scalar tensor.
    """

    def __init__(
        self,
        loss: str = "sinkhorn",
        *,
        p: int = 2,
        blur: float = 0.05,
        scaling: float = 0.5,
        debias: bool = True,
        backend: str = "tensorized",
        fused: bool = True,
        estimator: str = "batch",
    ) -> None:
        import geomloss

        self.estimator = check_estimator(estimator, loss, debias)
        self.loss, self.p, self.blur, self.scaling = loss, p, blur, scaling
        self.debias, self.backend, self.fused = debias, backend, bool(fused)
        self._geomloss = geomloss.SamplesLoss(
            loss=loss, p=p, blur=blur, scaling=scaling, debias=debias, backend=backend
        )
        self._transport_cost = None
        if estimator == "halves":
            self._transport_cost = SinkhornLoss(
                loss, p=p, blur=blur, scaling=scaling, debias=False, backend=backend, fused=fused
            )

    def uses_fused_kernel(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Whether a call on these inputs takes the compiled path."""
        return (
            self.fused
            and self.loss == "sinkhorn"
            and self.backend == "tensorized"
            and x.device.type == "cpu"
            and x.shape[0] * y.shape[0] >= _FUSED_MIN_PAIRS
            and _compiled_softmin() is not None
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"x and y must have shapes (N, D) and (M, D) (got {tuple(x.shape)} and "
                f"{tuple(y.shape)})"
            )
        if self._transport_cost is not None and (x.shape[0] < 2 or y.shape[0] < 2):
            raise ValueError(
                f"estimator 'halves' needs at least 2 points in each cloud (got "
                f"{x.shape[0]} and {y.shape[0]})"
            )
        if _one_point(x, y):
            # geomloss derives its epsilon schedule from the clouds' diameter and fails on 0.
            # Transport between copies of one point costs nothing, debiased or not, and every
            # cost gradient (x_i - y_j) vanishes: an exact zero that keeps the graph.
            return (x.sum() + y.sum()) * 0
        if self._transport_cost is not None:
            return self._halves(x, y)
        if not self.uses_fused_kernel(x, y):
            return self._geomloss(x, y)
        return self._fused(x, y)

    def _halves(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, m = x.shape[0] // 2, y.shape[0] // 2  # at least 1 each (checked by __call__)
        ot = self._transport_cost
        x1, x2, y1, y2 = x[:n], x[n : 2 * n], y[:m], y[m : 2 * m]
        cross = (ot(x1, y1) + ot(x1, y2) + ot(x2, y1) + ot(x2, y2)) / 4
        return cross - (ot(x1, x2) + ot(y1, y2)) / 2

    def _fused(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        divergence, samples = _geomloss_modules()
        kernel = _compiled_softmin()

        def softmin(eps, cost, h):
            # A 0-d tensor, not a float: the compiled kernel would specialise on every value
            # of the epsilon schedule.
            return kernel(torch.as_tensor(eps, dtype=cost.dtype), cost, h)

        cost = samples.cost_routines[self.p]
        x, y = x.unsqueeze(0), y.unsqueeze(0)  # (1, N, D), (1, M, D)
        a = torch.ones_like(x[..., 0]) / x.shape[1]
        b = torch.ones_like(y[..., 0]) / y.shape[1]
        c_xy, c_yx = cost(x, y.detach()), cost(y, x.detach())
        c_xx = cost(x, x.detach()) if self.debias else None
        c_yy = cost(y, y.detach()) if self.debias else None
        _, eps, eps_list, rho = divergence.scaling_parameters(
            x, y, self.p, self.blur, None, None, self.scaling
        )
        f_aa, g_bb, g_ab, f_ba = divergence.sinkhorn_loop(
            softmin,
            divergence.log_weights(a),
            divergence.log_weights(b),
            c_xx,
            c_yy,
            c_xy,
            c_yx,
            eps_list,
            rho,
            debias=self.debias,
        )
        value = divergence.sinkhorn_cost(
            eps, rho, a, b, f_aa, g_bb, g_ab, f_ba, batch=True, debias=self.debias
        )
        return value[0]


class KGramPenalty:
    """Weighted chi-square distance between the k-gram frequencies of one-hot samples and data.

    A training term to add to the Sinkhorn divergence. The divergence between minibatches
    of whole sequences is dominated by when switches happen; how often a rare symbol repeats
    or a run flickers (``0 2 0``) moves it little, so an RNN can match it and still miss the
    HMM's output transition matrix and short-pattern statistics (HMMSmall: P(1 -> 1) 0.046
    against 0.013). This term measures those directly: for k = 1..max_k, the frequencies
    ``f`` of every k-gram over all sliding windows of a minibatch against the frequencies
    ``q`` of the training data,

    ``weight * sum_k sum_c (f1_c - q_c) (f2_c - q_c) / (q_c + smoothing)``,

    with ``f1``, ``f2`` from the two halves of the minibatch (an odd last sequence is left
    out), plus the same sum over the k-grams that open the sequences (the first window
    alone): an RNN started from a random hidden state switches symbols more often in its
    first steps than the HMM (Fully: 14 % of sequences between steps 0 and 1 against 8 %),
    which pooled windows barely show. The halves make the estimate of the squared distance
    unbiased: a product of one half's error with itself would add the sampling variance,
    whose gradient rewards samples less variable than the data. Dividing by ``q`` makes a
    relative error count alike for common and rare k-grams; ``smoothing`` bounds the weight
    of k-grams the data never shows.

    With ``switch_lags = L > 0`` the same chi-square form (same weight and smoothing) also
    compares the rates of switch pairs, a symbol change between steps t and t + 1 and another
    between t + l and t + l + 1, for l = 1..L, with the data's. The HMM's emission noise
    makes one-step flickers (``0 1 0``) at a steady rate; an RNN can emit almost
    deterministically and flicker in bursts of two or three steps instead (Fully: switches at
    t and t + 2 on 1.6 % of step pairs against the HMM's 0.75 %), which costs sequence-level
    fidelity while moving each 4-gram frequency little. These L rates rest on many more
    counts than single k-gram cells. Their gradient is that of their product form
    (``1 - sum_o y[t, o] y[t + 1, o]`` per switch; multilinear at one-hot values).

    The samples must be one-hot in value (straight-through Gumbel-softmax samples). The
    gradient of the k-gram terms is that of the product form
    ``f_c = mean prod_j y[t + j, c_j]`` at those one-hot values, computed from the k-gram
    codes of the samples (memory O(n T O), not O(n T O^k)).

    With ``probabilities=True`` the call takes instead each sequence's per-step output
    probabilities ``p`` and evaluates the same product forms at them (memory O(n T O^k)).
    When the outputs are independent across steps given the sequence's noise, as in
    :class:`hmmrnn.model.NoiseRNN` (its outputs do not feed back), every product form is
    multilinear over distinct steps, so these are the exact expected frequencies and rates
    of the samples given the noise: the same penalty in expectation, without the sampling
    noise of the symbols, and with the exact gradient in the logits rather than the
    straight-through one (which is nearly zero for a symbol given probability 0.01).

    Parameters
    ----------
    target : torch.Tensor, shape (num_seq, seq_len, outputs)
        One-hot data sequences; their k-gram frequencies are the target.
    max_k : int
        Longest k-gram (1 <= max_k <= seq_len, ``outputs ** max_k`` at most ``MAX_KGRAMS``).
    weight : float
        Multiplies the whole term.
    smoothing : float
        Added to every target frequency in the weights (> 0).
    switch_lags : int
        Largest lag of the switch-pair rates (0: none; at most ``seq_len - 2``).

    Call with one-hot samples ``out`` of shape (n, seq_len, outputs), n >= 2, on the
    target's device (or per-step probabilities with ``probabilities=True``); returns a scalar
    tensor.
    """

    def __init__(
        self,
        target: torch.Tensor,
        *,
        max_k: int = 4,
        weight: float = 1.0,
        smoothing: float = 1e-3,
        switch_lags: int = 0,
    ) -> None:
        if target.dim() != 3 or 0 in target.shape:
            raise ValueError(
                f"target must be one-hot sequences (num_seq, seq_len, outputs) "
                f"(got shape {tuple(target.shape)})"
            )
        _, seq_len, outputs = target.shape
        if isinstance(max_k, bool) or not isinstance(max_k, int) or not 1 <= max_k <= seq_len:
            raise ValueError(
                f"max_k must be an integer from 1 to the sequence length {seq_len} (got {max_k!r})"
            )
        if outputs**max_k > MAX_KGRAMS:
            raise ValueError(
                f"max_k = {max_k} with {outputs} outputs gives {outputs**max_k} k-grams "
                f"(at most {MAX_KGRAMS}); lower max_k"
            )
        for name, value in (("weight", weight), ("smoothing", smoothing)):
            if not (isinstance(value, (int, float)) and value >= 0 and value < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
        if smoothing == 0:
            raise ValueError("smoothing must be > 0 (got 0)")
        if (
            isinstance(switch_lags, bool)
            or not isinstance(switch_lags, int)
            or not 0 <= switch_lags <= seq_len - 2
        ):
            raise ValueError(
                f"switch_lags must be an integer from 0 to the sequence length minus 2 "
                f"({seq_len - 2}) (got {switch_lags!r})"
            )
        self.switch_lags = switch_lags
        self.switch_target = switch_pair_rates(target, switch_lags).mean(0) if switch_lags else None
        self.max_k, self.weight, self.smoothing = max_k, float(weight), float(smoothing)
        self.seq_len, self.outputs = seq_len, outputs
        symbols = target.argmax(-1)
        self.targets, self.starts = [], []
        for k in range(1, max_k + 1):
            codes = self._codes(symbols, k)
            for windows, into in ((codes, self.targets), (codes[:, :1], self.starts)):
                freq = torch.bincount(windows.reshape(-1), minlength=outputs**k) / windows.numel()
                into.append(freq.to(target.dtype))

    def _codes(self, idx: torch.Tensor, k: int) -> torch.Tensor:
        """(n, T) symbols -> (n, T - k + 1) codes of the k-grams starting at each step."""
        width = idx.shape[1] - k + 1
        codes = idx[:, :width].clone()
        for j in range(1, k):
            codes.mul_(self.outputs).add_(idx[:, j : j + width])
        return codes

    def _term(self, codes, q, idx, k, which, grad) -> torch.Tensor:
        """One chi-square term over the windows ``codes`` (n, W); adds its gradient to grad."""
        half, width = idx.shape[0] // 2, codes.shape[1]
        count = half * width
        f1 = torch.bincount(codes[:half].reshape(-1), minlength=q.numel()) / count
        f2 = torch.bincount(codes[half : 2 * half].reshape(-1), minlength=q.numel()) / count
        w = 1.0 / (q + self.smoothing)
        d1, d2 = f1.to(q.dtype) - q, f2.to(q.dtype) - q
        # d value / d f1 = w d2, and d f1 / d (one window's indicator) = 1 / count.
        table = torch.stack([w * d2, w * d1, torch.zeros_like(w)]) / count
        steps = torch.arange(self.outputs, device=idx.device)
        for j in range(k):
            place = self.outputs ** (k - 1 - j)
            # The cells reached by changing the symbol at position j of each window.
            base = codes - idx[:, j : j + width] * place
            cells = base.unsqueeze(-1) + steps * place
            grad[:, j : j + width] += table[which[:, None, None], cells]
        return (w * d1 * d2).sum()

    def __call__(self, out: torch.Tensor, *, probabilities: bool = False) -> torch.Tensor:
        if out.dim() != 3 or tuple(out.shape[1:]) != (self.seq_len, self.outputs):
            raise ValueError(
                f"out must have shape (n, {self.seq_len}, {self.outputs}) like the target "
                f"(got {tuple(out.shape)})"
            )
        n, seq_len, outputs = out.shape
        half = n // 2
        if half == 0:
            raise ValueError(f"the k-gram penalty needs at least 2 sequences (got {n})")
        if probabilities:
            return self._expected(out, half)
        idx = out.detach().argmax(-1)
        # Rows of the first half read the gradient table of half 1, the second half that of
        # half 2; an odd last row reads an all-zero table.
        which = torch.full((n,), 2, dtype=torch.long, device=out.device)
        which[:half], which[half : 2 * half] = 0, 1
        value = out.new_zeros(())
        grad = torch.zeros_like(out)
        for k in range(1, self.max_k + 1):
            codes = self._codes(idx, k)
            # All windows, then the first window alone (the start of the sequences).
            for windows, q in ((codes, self.targets[k - 1]), (codes[:, :1], self.starts[k - 1])):
                value = value + self._term(
                    windows, q.to(out.device, out.dtype), idx, k, which, grad
                )
        value, grad = self.weight * value, self.weight * grad
        # Forward: the penalty's value; backward: ``grad`` into ``out`` (and through the
        # straight-through samples into the logits).
        linear = (out * grad).sum()
        return value + linear - linear.detach() + self._switch_term(out, half)

    def _chi_square(self, f: torch.Tensor, q: torch.Tensor, half: int) -> torch.Tensor:
        """Unbiased chi-square between the halves of per-row frequencies ``f`` (n, C) and q."""
        q = q.to(f.device, f.dtype)
        d1, d2 = f[:half].mean(0) - q, f[half : 2 * half].mean(0) - q
        return (d1 * d2 / (q + self.smoothing)).sum()

    def _switch_term(self, y: torch.Tensor, half: int) -> torch.Tensor:
        if not self.switch_lags:
            return y.new_zeros(())
        rates = switch_pair_rates(y, self.switch_lags)
        return self.weight * self._chi_square(rates, self.switch_target, half)

    def _expected(self, p: torch.Tensor, half: int) -> torch.Tensor:
        """The penalty at per-step probabilities ``p`` (n, T, O): product forms, densely."""
        n = p.shape[0]
        total = p.new_zeros(())
        windows = p  # (n, T - k + 1, O**k): the product form of every k-gram at every step
        for k in range(1, self.max_k + 1):
            if k > 1:
                width = self.seq_len - k + 1
                grown = windows[:, :width].unsqueeze(-1) * p[:, k - 1 :].unsqueeze(-2)
                windows = grown.reshape(n, width, -1)  # codes: first symbol most significant
            for rows, q in (
                (windows.mean(1), self.targets[k - 1]),
                (windows[:, 0], self.starts[k - 1]),
            ):
                total = total + self._chi_square(rows, q, half)
        return self.weight * total + self._switch_term(p, half)


def switch_pair_rates(y: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Per-sequence rates of switch pairs at lags 1..max_lag, in product form.

    Parameters
    ----------
    y : torch.Tensor, shape (n, seq_len, outputs)
        One-hot sequences (or straight-through samples, for a gradient).
    max_lag : int
        Largest lag, 1 <= max_lag <= seq_len - 2.

    Returns
    -------
    torch.Tensor, shape (n, max_lag)
        Column l - 1: the fraction of steps t of each sequence with a symbol change between
        t and t + 1 and another between t + l and t + l + 1.
    """
    switch = 1 - (y[:, :-1] * y[:, 1:]).sum(-1)  # (n, seq_len - 1)
    # Lag 1 shares step t + 1 between its two switches; written per middle symbol, every
    # step enters each product once, so the form stays multilinear.
    lag1 = (y[:, 1:-1] * (1 - y[:, :-2]) * (1 - y[:, 2:])).sum(-1).mean(1)
    rates = [lag1] + [(switch[:, :-lag] * switch[:, lag:]).mean(1) for lag in range(2, max_lag + 1)]
    return torch.stack(rates, 1)
