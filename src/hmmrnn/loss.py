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

__all__ = ["ESTIMATORS", "SinkhornLoss", "check_estimator"]

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


# Below this many point pairs (N * M) the eager soft-min is already fast and compiling
# (a few seconds once per process) would not pay for itself.
_FUSED_MIN_PAIRS = 256 * 256
_COMPILED: dict[str, Any] = {}


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
        if self._transport_cost is not None:
            return self._halves(x, y)
        if not self.uses_fused_kernel(x, y):
            return self._geomloss(x, y)
        return self._fused(x, y)

    def _halves(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, m = x.shape[0] // 2, y.shape[0] // 2
        if n == 0 or m == 0:
            raise ValueError(
                f"estimator 'halves' needs at least 2 points in each cloud (got "
                f"{x.shape[0]} and {y.shape[0]})"
            )
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
