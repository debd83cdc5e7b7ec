"""Reverse-engineering of a trained RNN: PCA of its hidden states and latent-trajectory plots.

The hidden states of a trained :class:`~hmmrnn.model.NoiseRNN` are generated in batch, reduced
with PCA, and the first principal components are drawn as a trajectory whose steps are coloured
by the output the network emitted. Results are :class:`PCAResult` objects saved as ``.npz``; the
plotting functions work from a ``PCAResult`` alone, so a workflow can redraw figures without the
model or torch.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from hmmrnn._utils import DYNAMICS_MODES, atomic_path, check_choice, torch_generator

logger = logging.getLogger("hmmrnn.reverse")

PLOTLY_JS_NAME = "plotly.min.js"

_NPZ_KEYS = (
    "components",
    "mean",
    "explained_variance_ratio",
    "projected",
    "observations",
    "dynamics_mode",
    "outputs",
)
# Rows per chunk in the covariance: float32 sums over at most this many rows stay accurate.
_CHUNK_ROWS = 32768
# Rows centred at a time within a chunk: the centred copy (2.4 MB at H = 150) stays in cache
# and is all the scratch memory a worker needs.
_SUB_ROWS = 4096


def _check_dynamics_mode(dynamics_mode: str) -> None:
    check_choice("dynamics_mode", dynamics_mode, DYNAMICS_MODES)


@dataclass(frozen=True, eq=False)
class PCAResult:
    """PCA of RNN hidden states together with the outputs emitted along the trajectories.

    Attributes
    ----------
    components : ndarray, shape (K, H), float64
        Principal axes (unit rows, orthogonal), ordered by decreasing variance. The sign of
        each axis is fixed so that its entry of largest magnitude is positive.
    mean : ndarray, shape (H,), float64
        Mean hidden state subtracted before projecting.
    explained_variance_ratio : ndarray, shape (K,), float64
        Fraction of the total hidden-state variance along each component.
    projected : ndarray, shape (N, T, K), float32
        Hidden states in PC coordinates, ``(hidden - mean) @ components.T``.
    observations : ndarray, shape (N, T), int64
        Output emitted at each step (the step's arrow in the plots has this colour).
    dynamics_mode : str
        How the hidden states were generated, one of :data:`DYNAMICS_MODES`.
    outputs : int
        Number of possible outputs (sets the legend and colours); ``max(observations) + 1``
        when not given.
    """

    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray
    projected: np.ndarray
    observations: np.ndarray
    dynamics_mode: str = "full"
    outputs: int | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("components", np.asarray(self.components, dtype=np.float64))
        put("mean", np.asarray(self.mean, dtype=np.float64))
        put("explained_variance_ratio", np.asarray(self.explained_variance_ratio, np.float64))
        put("projected", np.asarray(self.projected, dtype=np.float32))
        put("observations", np.asarray(self.observations, dtype=np.int64))
        put("dynamics_mode", str(self.dynamics_mode))

        if self.components.ndim != 2:
            raise ValueError(f"components must have shape (K, H) (got {self.components.shape})")
        k, h = self.components.shape
        if self.mean.shape != (h,):
            raise ValueError(f"mean must have shape ({h},) (got {self.mean.shape})")
        if self.explained_variance_ratio.shape != (k,):
            raise ValueError(
                f"explained_variance_ratio must have shape ({k},) "
                f"(got {self.explained_variance_ratio.shape})"
            )
        if self.projected.ndim != 3 or self.projected.shape[2] != k:
            raise ValueError(f"projected must have shape (N, T, {k}) (got {self.projected.shape})")
        if self.observations.shape != self.projected.shape[:2]:
            raise ValueError(
                f"observations must have shape {self.projected.shape[:2]} "
                f"(got {self.observations.shape})"
            )
        _check_dynamics_mode(self.dynamics_mode)
        if self.observations.size and self.observations.min() < 0:
            raise ValueError(f"observations must be >= 0 (got minimum {self.observations.min()})")
        seen = int(self.observations.max()) + 1 if self.observations.size else 1
        outputs = seen if self.outputs is None else int(self.outputs)
        if outputs < seen:
            raise ValueError(
                f"outputs must exceed every observation (got outputs={outputs}, "
                f"largest observation {seen - 1})"
            )
        put("outputs", outputs)

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PCAResult):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result to a compressed ``.npz`` file (atomically) and return its path."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            # A file handle, not a name: np.savez would append ".npz" to the temporary name.
            np.savez_compressed(
                fh,
                components=self.components,
                mean=self.mean,
                explained_variance_ratio=self.explained_variance_ratio,
                projected=self.projected,
                observations=self.observations,
                dynamics_mode=np.array(self.dynamics_mode),
                outputs=np.array(self.outputs, dtype=np.int64),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PCAResult:
        """Read a result written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in _NPZ_KEYS if key not in data.files]
            if missing:
                raise ValueError(f"{path} is not a PCAResult file: missing arrays {missing}")
            return cls(
                components=data["components"],
                mean=data["mean"],
                explained_variance_ratio=data["explained_variance_ratio"],
                projected=data["projected"],
                observations=data["observations"],
                dynamics_mode=str(data["dynamics_mode"]),
                outputs=int(data["outputs"]),
            )


@contextmanager
def _chunk_runner(width: int, dtype):
    """``run(fn, chunks)``: ``[fn(a, b, scratch) for a, b in chunks]``, on worker threads.

    The workers are :func:`hmmrnn.model._block_runner`'s (single-threaded torch ops, one
    thread per torch thread). ``scratch(rows)`` is a per-thread (rows <= _SUB_ROWS, width)
    buffer. Results come back in chunk order.
    """
    import torch

    from hmmrnn.model import _block_runner

    store = threading.local()

    def scratch(rows: int):
        buf = getattr(store, "buf", None)
        if buf is None:
            buf = store.buf = torch.empty((_SUB_ROWS, width), dtype=dtype)
        return buf[:rows]

    with _block_runner(torch.device("cpu")) as runner:

        def run(fn, chunks):
            futures = [runner.submit(fn, a, b, scratch) for a, b in chunks]
            return [future.result() for future in futures]

        yield run


def run_pca(
    hidden_states: Any,
    n_components: int = 3,
    observations: Any = None,
    *,
    dynamics_mode: str = "full",
    outputs: int | None = None,
) -> PCAResult:
    """PCA of hidden states by eigen-decomposition of their covariance.

    Deterministic: the same data give identical results (fixed component signs, no randomised
    solver), whatever the number of threads. The covariance is accumulated chunk by chunk, so
    10^6 states of dimension 150 need neither an SVD of the full matrix nor a float64 copy of
    it; ``torch.get_num_threads()`` worker threads share the chunks.

    Parameters
    ----------
    hidden_states : array_like or torch.Tensor, shape (N, T, H) or (M, H)
        Hidden states; a 2-D array is treated as one trajectory of M steps.
    n_components : int
        Number of components K, ``1 <= K <= H``.
    observations : array_like, shape (N, T) or (M,), optional
        Output emitted at each step; zeros (a single output) when omitted.
    dynamics_mode : str
        Recorded in the result; one of :data:`DYNAMICS_MODES`.
    outputs : int, optional
        Number of possible outputs, see :class:`PCAResult`.

    Returns
    -------
    PCAResult
    """
    if hasattr(hidden_states, "detach"):  # torch tensor: share memory, no copy
        hidden_states = hidden_states.detach().cpu().numpy()
    hidden = np.asarray(hidden_states)
    if hidden.ndim == 2:
        hidden = hidden[None]
    if hidden.ndim != 3:
        raise ValueError(
            f"hidden_states must have shape (N, T, H) or (M, H) (got {np.shape(hidden_states)})"
        )
    n, t, h = hidden.shape
    if not np.issubdtype(hidden.dtype, np.number) or np.issubdtype(
        hidden.dtype, np.complexfloating
    ):
        raise ValueError(f"hidden_states must be real numbers (got dtype {hidden.dtype})")
    if n * t < 2:
        raise ValueError(f"PCA needs at least 2 hidden states (got {n * t})")
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
        raise ValueError(f"n_components must be an integer (got {n_components!r})")
    if not 1 <= n_components <= h:
        raise ValueError(
            f"n_components must be between 1 and the hidden size {h} (got {n_components})"
        )
    if observations is None:
        observations = np.zeros((n, t), dtype=np.int64)
    observations = np.asarray(observations)
    if observations.shape == (t,) and n == 1:
        observations = observations[None]
    if observations.shape != (n, t):
        raise ValueError(
            f"observations must have shape {(n, t)} to match hidden_states "
            f"(got {observations.shape})"
        )
    _check_dynamics_mode(dynamics_mode)

    import torch

    # float32 states (what the RNN produces) are multiplied in float32, chunk by chunk, and the
    # chunk products summed in float64: ~1e-7 relative error, several times faster than float64.
    # Any other input is handled in float64.
    dtype = np.float32 if hidden.dtype == np.float32 else np.float64
    flat_np = np.ascontiguousarray(hidden.reshape(n * t, h), dtype=dtype)
    with warnings.catch_warnings():
        # Read-only input (e.g. a memory-mapped file) is fine: the tensor is only read.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        flat = torch.from_numpy(flat_np)
    rows = n * t
    chunks = [(start, min(start + _CHUNK_ROWS, rows)) for start in range(0, rows, _CHUNK_ROWS)]

    with _chunk_runner(h, flat.dtype) as run:
        # Column sums per chunk (float64), added in chunk order: the same result however the
        # chunks are spread over threads.
        sums = run(lambda a, b, _: flat_np[a:b].sum(axis=0, dtype=np.float64), chunks)
        mean = np.sum(sums, axis=0) / rows
        # A float64 sum of finite float32/float64 values is finite, so this catches any NaN or
        # inf in the data without a pass over it.
        if not np.isfinite(mean).all():
            raise ValueError("hidden_states contain NaN or infinite values")
        mean_c = torch.from_numpy(mean.astype(dtype))

        def scatter(a: int, b: int, scratch) -> np.ndarray:
            # sum over rows of (x - mean)(x - mean)^T, in float32 over at most _CHUNK_ROWS rows
            acc = torch.empty((h, h), dtype=flat.dtype)
            for i, sub in enumerate(range(a, b, _SUB_ROWS)):
                stop = min(sub + _SUB_ROWS, b)
                centred = scratch(stop - sub)
                torch.sub(flat[sub:stop], mean_c, out=centred)
                if i == 0:
                    torch.mm(centred.T, centred, out=acc)
                else:
                    acc.addmm_(centred.T, centred)
            return acc.numpy().astype(np.float64)

        cov = np.sum(run(scatter, chunks), axis=0) / (rows - 1)

        eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
        order = np.argsort(eigvals)[::-1][:n_components]
        components = eigvecs[:, order].T
        # An eigenvector's sign is arbitrary; pin it so results can be compared across runs.
        largest = np.abs(components).argmax(axis=1)
        components *= np.sign(components[np.arange(n_components), largest])[:, None]
        total = np.trace(cov)
        ratio = np.clip(eigvals[order], 0.0, None) / total if total > 0 else np.zeros(n_components)

        projected = torch.empty((rows, n_components), dtype=flat.dtype)
        # (K, H) @ (H, rows), written through the transposed view of the (rows, K) result:
        # 3.4x faster with MKL than (rows, H) @ (H, K) (0.05 s vs 0.16 s for 900k x 150 x 3).
        comps = torch.from_numpy(np.ascontiguousarray(components, dtype=dtype))

        def project(a: int, b: int, scratch) -> None:
            for sub in range(a, b, _SUB_ROWS):
                stop = min(sub + _SUB_ROWS, b)
                centred = scratch(stop - sub)
                torch.sub(flat[sub:stop], mean_c, out=centred)
                torch.mm(comps, centred.T, out=projected[sub:stop].T)

        run(project, chunks)
    projected = projected.numpy().astype(np.float32, copy=False)
    return PCAResult(
        components=components,
        mean=mean,
        explained_variance_ratio=ratio,
        projected=projected.reshape(n, t, n_components),
        observations=observations,
        dynamics_mode=dynamics_mode,
        outputs=outputs,
    )


# --------------------------------------------------------------------------------------------
# Plots (from a PCAResult only)


def _steps(result: PCAResult, num_points: int, dims: int):
    """Start points, end points and emitted outputs of the first ``num_points`` trajectory points.

    Points are taken in sequence order (whole sequences first); a step joins two consecutive
    points of the same sequence, so no arrow jumps from the end of one sequence to the next.
    """
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)):
        raise ValueError(f"num_points must be an integer (got {num_points!r})")
    if num_points < 2:
        raise ValueError(f"num_points must be at least 2 to draw a step (got {num_points})")
    if result.n_components < dims:
        raise ValueError(
            f"a {dims}-D plot needs at least {dims} principal components "
            f"(the result has {result.n_components})"
        )
    n, t, k = result.projected.shape
    if t < 2:
        raise ValueError(f"sequences of length {t} have no steps to draw (need seq_len >= 2)")
    m = min(num_points, n * t)
    points = result.projected.reshape(n * t, k)[:m, :dims]
    labels = result.observations.reshape(n * t)[: m - 1]
    same_sequence = (np.arange(1, m) % t) != 0
    return points[:-1][same_sequence], points[1:][same_sequence], labels[same_sequence]


def _colours(outputs: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if outputs <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(outputs)]


def _axis_label(result: PCAResult, i: int) -> str:
    return f"PC{i + 1} ({100 * result.explained_variance_ratio[i]:.1f}% of variance)"


def _title(result: PCAResult) -> str:
    return f"RNN hidden-state trajectory, {result.dynamics_mode} dynamics"


def trajectory_figure_2d(result: PCAResult, num_points: int = 1000):
    """Matplotlib figure of the trajectory in the PC1-PC2 plane.

    Each step from point ``i`` to point ``i + 1`` is an arrow coloured by the output emitted at
    ``i``. The figure is not registered with pyplot, so it is freed with its last reference.

    Parameters
    ----------
    result : PCAResult
        With at least 2 components.
    num_points : int
        Number of trajectory points drawn (the first ones, in sequence order); >= 2.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    start, end, labels = _steps(result, num_points, dims=2)
    delta = end - start
    colours = _colours(result.outputs)
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax = fig.add_subplot()
    for k in range(result.outputs):
        mask = labels == k
        ax.quiver(
            start[mask, 0],
            start[mask, 1],
            delta[mask, 0],
            delta[mask, 1],
            color=colours[k],
            angles="xy",
            scale_units="xy",
            scale=1,
            width=0.0025,
            headwidth=4,
            headlength=5,
            label=f"output {k}",
        )
    # quiver autoscales to the arrow tails only; include the heads.
    ax.update_datalim(np.concatenate([start, end]))
    ax.autoscale_view()
    ax.set_xlabel(_axis_label(result, 0))
    ax.set_ylabel(_axis_label(result, 1))
    ax.set_title(_title(result))
    ax.grid(True, alpha=0.3)
    ax.legend(title="emitted", loc="best")
    return fig


def plot_trajectory_2d(
    result: PCAResult, path: str | os.PathLike, num_points: int = 1000, dpi: int = 150
) -> Path:
    """Save :func:`trajectory_figure_2d` to ``path`` (PDF, or any matplotlib format by suffix)."""
    return _save_figure(trajectory_figure_2d(result, num_points), path, dpi)


def _save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    path = Path(path)
    # The temporary name ends in ".tmp", so the format must be given explicitly.
    fmt = path.suffix.lstrip(".") or "pdf"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


def trajectory_figure_3d(result: PCAResult, num_points: int = 1000, decimals: int = 4):
    """Plotly figure of the trajectory in PC1-PC3 space.

    One line trace per output (steps coloured by the output emitted at their start, gaps
    between steps) plus one cone trace per output marking the direction of each step.
    Coordinates are rounded to ``decimals`` and stored as float32 to keep the HTML small.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    start, end, labels = _steps(result, num_points, dims=3)
    scale = float(np.abs(np.concatenate([start, end])).max()) or 1.0
    start = np.round(start, decimals).astype(np.float32)
    end = np.round(end, decimals).astype(np.float32)
    direction = end - start
    length = np.linalg.norm(direction, axis=1, keepdims=True)
    # Arrowheads of one fixed size (3% of the data extent) read better than length-scaled ones.
    heads = np.round(direction / np.where(length > 0, length, 1.0) * 0.03 * scale, decimals)
    colours = _colours(result.outputs)

    fig = go.Figure()
    for k in range(result.outputs):
        mask = labels == k
        if not mask.any():
            continue
        # start, end, NaN per step: one trace draws many disconnected segments.
        xyz = np.stack([start[mask], end[mask], np.full_like(start[mask], np.nan)], axis=1).reshape(
            -1, 3
        )
        fig.add_trace(
            go.Scatter3d(
                x=xyz[:, 0],
                y=xyz[:, 1],
                z=xyz[:, 2],
                mode="lines",
                line={"color": colours[k], "width": 3},
                name=f"output {k}",
                legendgroup=str(k),
                connectgaps=False,
            )
        )
        tips, vec = end[mask], heads[mask].astype(np.float32)
        fig.add_trace(
            go.Cone(
                x=tips[:, 0],
                y=tips[:, 1],
                z=tips[:, 2],
                u=vec[:, 0],
                v=vec[:, 1],
                w=vec[:, 2],
                anchor="tip",
                sizemode="raw",
                sizeref=1,
                colorscale=[[0, colours[k]], [1, colours[k]]],
                showscale=False,
                legendgroup=str(k),
                showlegend=False,
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=_title(result),
        scene={
            "xaxis_title": _axis_label(result, 0),
            "yaxis_title": _axis_label(result, 1),
            "zaxis_title": _axis_label(result, 2),
        },
        legend_title_text="emitted",
    )
    return fig


def write_plotly_js(directory: str | os.PathLike) -> Path:
    """Write the plotly.js bundle as ``directory/plotly.min.js`` unless it is already there."""
    path = Path(directory) / PLOTLY_JS_NAME
    if not path.exists():
        from plotly.offline import get_plotlyjs

        with atomic_path(path) as tmp:
            tmp.write_text(get_plotlyjs(), encoding="utf-8")
    return path


def plot_trajectory_3d(result: PCAResult, path: str | os.PathLike, num_points: int = 1000) -> Path:
    """Save :func:`trajectory_figure_3d` as an interactive HTML page that works offline.

    The page loads ``plotly.min.js`` from its own directory instead of inlining the 4.6 MB
    bundle; the bundle is written there once if missing. The page takes about 100 bytes per
    point (110 kB for the default 1000 points), so stay under ~9000 points for 1 MB.
    """
    return _save_html(trajectory_figure_3d(result, num_points), path)


def _save_html(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    html = fig.to_html(include_plotlyjs="directory", full_html=True)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    write_plotly_js(path.parent)
    return path


# --------------------------------------------------------------------------------------------
# Model-facing class


class Reverse:
    """Generate hidden states of a trained RNN, run PCA on them and plot latent trajectories.

    Parameters
    ----------
    rnn : hmmrnn.rnn.RNN or hmmrnn.model.NoiseRNN
        The trained network (an ``RNN`` is unwrapped to its ``.module``).
    num_seq, seq_len : int
        Number and length of the generated sequences (``num_seq * seq_len`` hidden states).
    outputs : int, optional
        Number of outputs; must equal the network's ``output_size`` (the default).
    n_components : int
        Principal components kept, ``1 <= n_components <= hidden_size``.
    seed : int
        Seeds the noise inputs, initial states and Gumbel samples: same seed, same arrays.
    tau : float
        Gumbel-softmax temperature used to sample the emitted outputs.
    init : bool
        Start each sequence from a random (True, as in training) or zero hidden state.
    batch_size : int, optional
        Sequences generated per chunk (bounds memory; the draws, hence the arrays, depend on
        it); all at once when None.

    Attributes
    ----------
    result : PCAResult or None
        Set by :meth:`gen_data`.
    hidden : ndarray, shape (num_seq, seq_len, hidden_size), float32, or None
        Generated hidden states, set by :meth:`gen_data`.
    """

    def __init__(
        self,
        rnn: Any,
        num_seq: int = 1000,
        seq_len: int = 100,
        outputs: int | None = None,
        *,
        n_components: int = 3,
        seed: int = 0,
        tau: float = 1.0,
        init: bool = True,
        batch_size: int | None = None,
    ) -> None:
        module = getattr(rnn, "module", rnn)
        for attr in ("hidden_size", "output_size"):
            if not hasattr(module, attr):
                raise ValueError(
                    f"rnn must be an hmmrnn RNN or NoiseRNN (got {type(rnn).__name__} "
                    f"without .{attr})"
                )
        for name, value in (("num_seq", num_seq), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer (got {value!r})")
        if num_seq * seq_len < 2:
            raise ValueError(f"PCA needs at least 2 hidden states (got {num_seq * seq_len})")
        if outputs is None:
            outputs = int(module.output_size)
        elif outputs != module.output_size:
            raise ValueError(
                f"outputs must match the network's output_size {module.output_size} (got {outputs})"
            )
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
            raise ValueError(f"n_components must be an integer (got {n_components!r})")
        if not 1 <= n_components <= module.hidden_size:
            raise ValueError(
                f"n_components must be between 1 and the hidden size {module.hidden_size} "
                f"(got {n_components})"
            )
        if not tau > 0:
            raise ValueError(f"tau must be positive (got {tau})")
        self.rnn = rnn
        self.module = module
        self.num_seq = int(num_seq)
        self.seq_len = int(seq_len)
        self.outputs = int(outputs)
        self.n_components = int(n_components)
        self.seed = seed
        self.tau = float(tau)
        self.init = bool(init)
        self.batch_size = batch_size
        self.result: PCAResult | None = None
        self.hidden: np.ndarray | None = None

    def run_pca(
        self,
        hidden_states: Any,
        n_components: int | None = None,
        observations=None,
        *,
        dynamics_mode: str = "full",
    ) -> PCAResult:
        """:func:`run_pca` with this analysis' ``n_components`` and ``outputs`` as defaults."""
        return run_pca(
            hidden_states,
            self.n_components if n_components is None else n_components,
            observations,
            dynamics_mode=dynamics_mode,
            outputs=self.outputs,
        )

    def gen_data(self, dynamics_mode: str = "full") -> PCAResult:
        """Generate ``num_seq`` sequences of hidden states in batch and run PCA on them.

        Stores the hidden states in :attr:`hidden` and the PCA in :attr:`result`.
        """
        _check_dynamics_mode(dynamics_mode)
        import torch

        from hmmrnn.model import generate

        with torch.no_grad():
            gen = generate(
                self.module,
                self.num_seq,
                self.seq_len,
                tau=self.tau,
                init=self.init,
                dynamics_mode=dynamics_mode,
                # A CPU generator gives the same draws whatever device the model is on.
                generator=torch_generator(self.seed, "cpu"),
                batch_size=self.batch_size,
            )
        self.hidden = gen.hidden.numpy()
        self.result = self.run_pca(
            self.hidden, observations=gen.observations, dynamics_mode=dynamics_mode
        )
        logger.info(
            "PCA of %d hidden states (%s dynamics): explained variance ratio %s",
            self.num_seq * self.seq_len,
            dynamics_mode,
            np.array2string(self.result.explained_variance_ratio, precision=4),
        )
        return self.result

    def _require_result(self) -> PCAResult:
        if self.result is None:
            raise ValueError("no PCA result yet: call gen_data() or run_analysis() first")
        return self.result

    def plot_2d(self, num_points: int = 1000, save_path: str | os.PathLike | None = None):
        """2-D trajectory figure (:func:`trajectory_figure_2d`), saved to ``save_path`` if given."""
        fig = trajectory_figure_2d(self._require_result(), num_points)
        if save_path is not None:
            _save_figure(fig, save_path)
        return fig

    def plot_3d(self, num_points: int = 1000, save_path: str | os.PathLike | None = None):
        """3-D trajectory figure (:func:`trajectory_figure_3d`), saved as HTML if asked."""
        fig = trajectory_figure_3d(self._require_result(), num_points)
        if save_path is not None:
            _save_html(fig, save_path)
        return fig

    def run_analysis(
        self,
        dynamics_mode: str = "full",
        save_path: str | os.PathLike | None = None,
        num_points: int = 1000,
    ) -> PCAResult:
        """Generate data, run PCA and, if ``save_path`` (a directory) is given, write there
        ``latent_trajectory_2d.pdf``, ``latent_trajectory_3d.html`` (+ ``plotly.min.js``) and
        ``pca_results.npz``.
        """
        _check_dynamics_mode(dynamics_mode)
        if save_path is not None:
            save_dir = Path(save_path)
            if save_dir.exists() and not save_dir.is_dir():
                raise ValueError(f"save_path must be a directory (got the file {save_dir})")
            if self.n_components < 3:
                raise ValueError(f"the 3-D plot needs n_components >= 3 (got {self.n_components})")
            if num_points < 2:
                raise ValueError(f"num_points must be at least 2 (got {num_points})")
        result = self.gen_data(dynamics_mode)
        if save_path is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            plot_trajectory_2d(result, save_dir / "latent_trajectory_2d.pdf", num_points)
            plot_trajectory_3d(result, save_dir / "latent_trajectory_3d.html", num_points)
            result.save(save_dir / "pca_results.npz")
        return result


REVERSE = Reverse
