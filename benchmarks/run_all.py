#!/usr/bin/env python
"""Time hmmrnn against straightforward implementations, in one run: ``make bench``.

Every measurement runs in a fresh Python process (``run_all.py --only NAME --json``), so its
peak memory is its own. Inside that process the inputs are built first, then each repetition
resets the kernel's peak-RSS counter, runs, and records wall time and peak RSS; "extra"
memory is the peak minus the RSS just before the call. Times are medians over repetitions.

Usage::

    python benchmarks/run_all.py               # default: --quick sizes, about 5-10 min on 2 cores
    python benchmarks/run_all.py --full        # baselines at full size, the dense matcher at
                                               # n=10000 and a real run of config/config.yaml
    python benchmarks/run_all.py --write-readme   # also refresh the README Performance table
    python benchmarks/run_all.py --only hmm_ours --json   # one measurement (what the parent runs)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
README = REPO / "README.md"
START_MARKER = "<!-- performance:start -->"
END_MARKER = "<!-- performance:end -->"
RESULT_PREFIX = "@@bench-result@@ "

sys.path.insert(0, str(BENCH_DIR))  # baselines.py, reference.py


# --------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    """Problem sizes and repetitions of one benchmark mode."""

    mode: str
    num_seq: int = 30000  # HMM sampling, RNN generation, transition counts, full test
    seq_len: int = 30
    hmm_baseline_seq: int = 3000  # hmmlearn: sequences actually sampled (then scaled)
    rnn_baseline_seq: int = 1000  # per-step loop: sequences actually generated
    match_n: int = 10000
    dense_n: int = 2000  # dense log-domain Sinkhorn: size actually run (then scaled by n^2)
    test_n: int = 30000
    pca_steps: int = 900_000
    pca_baseline_steps: int = 90_000
    train_batch: int = 4096
    html_points: int = 3000
    html_pca_seq: int = 300  # the default config's reverse.num_seq
    reps: int = 5  # fast measurements
    slow_reps: int = 3  # measurements of seconds or more
    test_reps: int = 1
    dense_reps: int = 3
    dry_reps: int = 3
    default_config_run: bool = False  # time the dry run after a real run of config/config.yaml


QUICK = Sizes(mode="quick")
FULL = Sizes(
    mode="full",
    hmm_baseline_seq=30000,
    rnn_baseline_seq=30000,
    dense_n=10000,
    pca_baseline_steps=900_000,
    dense_reps=1,
    test_reps=3,
    default_config_run=True,
)
# Tiny sizes that exercise every code path in about a minute (development, CI smoke runs).
SMOKE = Sizes(
    mode="smoke",
    num_seq=600,
    hmm_baseline_seq=60,
    rnn_baseline_seq=20,
    match_n=400,
    dense_n=200,
    test_n=600,
    pca_steps=9000,
    pca_baseline_steps=900,
    train_batch=256,
    html_points=300,
    html_pca_seq=30,
    reps=2,
    slow_reps=2,
    dense_reps=1,
    dry_reps=1,
)
MODES = {"quick": QUICK, "full": FULL, "smoke": SMOKE}

# The shapes of the paper's default model.
INPUT_SIZE, HIDDEN_SIZE, OUTPUTS = 100, 150, 3
# Matching settings from the issue: epsilon 0.1, at most 1000 iterations, tolerance 0.1.
EPSILON, MAX_ITER, TOL = 0.1, 1000, 0.1


# --------------------------------------------------------------------------------------------
# Memory and timing (inside a measurement process)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Current resident set size (falls back to the peak where /proc is missing)."""
    kib = _status_kib("VmRSS")
    if kib is None:
        return _maxrss_bytes()
    return kib * 1024


def _maxrss_bytes() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024  # bytes on macOS, KiB on Linux


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    kib = _status_kib("VmHWM")
    return _maxrss_bytes() if kib is None else kib * 1024


def timed(fn: Callable[[], Any], reps: int, warmup: int = 0) -> dict[str, Any]:
    """Run ``fn`` ``warmup + reps`` times; wall times, peak and extra memory of the timed runs.

    Where the peak counter cannot be reset, the peak is the process's lifetime peak.
    """
    for _ in range(warmup):
        fn()
    times, peaks, extras = [], [], []
    last = None
    for _ in range(reps):
        last = None
        gc.collect()
        before = rss_bytes()
        reset_peak()
        t0 = time.perf_counter()
        last = fn()
        seconds = time.perf_counter() - t0
        peak = peak_bytes()
        times.append(seconds)
        peaks.append(peak)
        extras.append(max(0, peak - before))
    return {
        "times": times,
        "seconds": statistics.median(times),
        "peak_bytes": max(peaks),
        "extra_bytes": max(extras),
        "rss_before_bytes": before,
        "last": last,
    }


def _result(
    measured: dict[str, Any], scale: float = 1.0, info: dict | None = None, **extra: Any
) -> dict[str, Any]:
    out = {k: v for k, v in measured.items() if k != "last"}
    out["scale"] = scale
    out["seconds_scaled"] = out["seconds"] * scale
    out.update(info or {})
    out.update(extra)
    return out


# --------------------------------------------------------------------------------------------
# Inputs


def _hmm():
    from hmmrnn.hmm import HMM

    return HMM(states=3, outputs=OUTPUTS)  # stay_prob 0.95, linear emissions


def _module():
    import torch

    from hmmrnn.model import NoiseRNN

    torch.manual_seed(0)
    return NoiseRNN(INPUT_SIZE, HIDDEN_SIZE, output_size=OUTPUTS)


def _hmm_observations(n: int, seq_len: int, seed: int):
    return _hmm().sample(n, seq_len, rng=seed)[0]


# --------------------------------------------------------------------------------------------
# Measurements: name -> function(sizes) -> JSON-able dict

MEASUREMENTS: dict[str, Callable[[Sizes], dict[str, Any]]] = {}


def measurement(name: str):
    def register(fn):
        MEASUREMENTS[name] = fn
        return fn

    return register


@measurement("hmm_ours")
def _hmm_ours(s: Sizes) -> dict:
    hmm = _hmm()
    hmm.sample(100, s.seq_len, rng=0)
    m = timed(lambda: hmm.sample(s.num_seq, s.seq_len, rng=1), s.reps)
    return _result(m, n=s.num_seq)


@measurement("hmm_baseline")
def _hmm_baseline(s: Sizes) -> dict:
    from baselines import hmmlearn_sample

    hmm = _hmm()
    args = (hmm.start_prob, hmm.transition_matrix, hmm.emission_matrix)
    hmmlearn_sample(*args, 10, s.seq_len)
    n = min(s.hmm_baseline_seq, s.num_seq)
    m = timed(lambda: hmmlearn_sample(*args, n, s.seq_len, seed=1), s.slow_reps)
    return _result(m, scale=s.num_seq / n, n=n)


@measurement("rnn_ours")
def _rnn_ours(s: Sizes) -> dict:
    import torch

    from hmmrnn.model import generate

    module = _module()
    gen = torch.Generator().manual_seed(0)

    def run():
        # As the test stage calls it.
        return generate(
            module, s.num_seq, s.seq_len, generator=gen, batch_size=4096, return_hidden=False
        )

    generate(module, 100, s.seq_len, generator=gen)  # warm-up
    m = timed(run, s.slow_reps)
    return _result(m, n=s.num_seq)


@measurement("rnn_baseline")
def _rnn_baseline(s: Sizes) -> dict:
    import torch
    from baselines import rnn_loop_generate

    module = _module()
    gen = torch.Generator().manual_seed(0)
    rnn_loop_generate(module, 2, s.seq_len, generator=gen)
    n = min(s.rnn_baseline_seq, s.num_seq)
    m = timed(lambda: rnn_loop_generate(module, n, s.seq_len, generator=gen), s.slow_reps)
    return _result(m, scale=s.num_seq / n, n=n)


@measurement("transitions_ours")
def _transitions_ours(s: Sizes) -> dict:
    from hmmrnn.metrics import transition_counts

    obs = _hmm_observations(s.num_seq, s.seq_len, 2)
    m = timed(lambda: transition_counts(obs, OUTPUTS), s.reps, warmup=1)
    return _result(m, n=s.num_seq)


@measurement("transitions_baseline")
def _transitions_baseline(s: Sizes) -> dict:
    from baselines import loop_transition_counts

    obs = _hmm_observations(s.num_seq, s.seq_len, 2)
    m = timed(lambda: loop_transition_counts(obs, OUTPUTS), s.slow_reps)
    return _result(m, n=s.num_seq)


def _match_ours(n: int, seq_len: int, reps: int) -> dict:
    from hmmrnn.sinkhorn import match_sequences

    x = _hmm_observations(n, seq_len, 3)
    y = _hmm_observations(n, seq_len, 4)
    match_sequences(x[:50], y[:50], OUTPUTS, epsilon=EPSILON, max_iter=MAX_ITER, tol=TOL)
    m = timed(
        lambda: match_sequences(x, y, OUTPUTS, epsilon=EPSILON, max_iter=MAX_ITER, tol=TOL), reps
    )
    return _result(m, info=_match_info(m["last"]), n=n)


def _match_info(result: Any) -> dict:
    get = result.get if isinstance(result, dict) else lambda k: getattr(result, k, None)
    n_iter, converged = get("n_iter"), get("converged")
    return {
        "n_iter": None if n_iter is None else int(n_iter),
        "converged": None if converged is None else bool(converged),
    }


@measurement("match_ours")
def _match_ours_m(s: Sizes) -> dict:
    return _match_ours(s.match_n, s.seq_len, s.slow_reps)


@measurement("match_dense")
def _match_dense(s: Sizes) -> dict:
    import torch
    from reference import dense_sinkhorn_match, one_hot_flat

    n = min(s.dense_n, s.match_n)
    x = one_hot_flat(_hmm_observations(n, s.seq_len, 3), OUTPUTS)
    y = one_hot_flat(_hmm_observations(n, s.seq_len, 4), OUTPUTS)

    def run():
        # float32 dense matrices, as the paper's matcher used.
        return dense_sinkhorn_match(
            x, y, epsilon=EPSILON, max_iter=MAX_ITER, tol=TOL, dtype=torch.float32
        )

    dense_sinkhorn_match(x[:50], y[:50], epsilon=EPSILON, max_iter=MAX_ITER, tol=TOL)
    m = timed(run, s.dense_reps)
    # Every iteration works on n x n matrices: time and extra memory grow as n^2.
    scale = (s.match_n / n) ** 2
    return _result(
        m,
        scale=scale,
        info=_match_info(m["last"]),
        n=n,
        extra_bytes_scaled=m["extra_bytes"] * scale,
    )


@measurement("test_ours")
def _test_ours(s: Sizes) -> dict:
    import torch

    from hmmrnn.model import generate
    from hmmrnn.testing import compare

    hmm, module = _hmm(), _module()

    def run():
        # What the workflow's test stage does, minus reading and writing files.
        rng = __import__("numpy").random.default_rng(5)
        obs_a, _ = hmm.sample(s.test_n, s.seq_len, rng)
        obs_b, _ = hmm.sample(s.test_n, s.seq_len, rng)
        gen = generate(
            module,
            s.test_n,
            s.seq_len,
            generator=torch.Generator().manual_seed(5),
            batch_size=4096,
            return_hidden=False,
        )
        return compare(
            hmm,
            obs_a,
            obs_b,
            gen.observations,
            OUTPUTS,
            epsilon=EPSILON,
            max_iter=MAX_ITER,
            tol=TOL,
        )

    m = timed(run, s.test_reps)
    res = m["last"]
    return _result(
        m,
        n=s.test_n,
        n_iter_hmm=res.match_hmm.get("n_iter"),
        n_iter_rnn=res.match_rnn.get("n_iter"),
    )


@measurement("pca_ours")
def _pca_ours(s: Sizes) -> dict:
    from hmmrnn.reverse import Reverse

    module = _module()
    num_seq = s.pca_steps // s.seq_len
    Reverse(module, num_seq=10, seq_len=s.seq_len).gen_data()

    def run():
        analysis = Reverse(module, num_seq=num_seq, seq_len=s.seq_len, seed=0)
        analysis.gen_data()
        return None  # drop the hidden states before the next repetition

    m = timed(run, s.slow_reps)
    return _result(m, n=num_seq * s.seq_len)


@measurement("pca_baseline")
def _pca_baseline(s: Sizes) -> dict:
    import torch
    from baselines import rnn_loop_generate

    module = _module()
    gen = torch.Generator().manual_seed(0)
    steps = min(s.pca_baseline_steps, s.pca_steps)
    rnn_loop_generate(module, 1, 100, generator=gen)

    # One long trajectory from h = 0, one step per torch call, as the paper generated it.
    def run():
        rnn_loop_generate(module, 1, steps, init=False, generator=gen)

    m = timed(run, s.slow_reps)
    return _result(m, scale=s.pca_steps / steps, n=steps)


def _train_data(batch: int, seq_len: int):
    import torch

    from hmmrnn.hmm import one_hot

    obs = _hmm_observations(batch, seq_len, 6)
    return torch.from_numpy(one_hot(obs, OUTPUTS))


@measurement("train_ours")
def _train_ours(s: Sizes) -> dict:
    import torch

    from hmmrnn.training import Trainer

    torch.manual_seed(0)
    module = _module()
    train = _train_data(s.train_batch, s.seq_len)
    val = train[:8]  # fit() always validates; 8 sequences make that negligible

    def step():
        # One epoch over exactly one batch = one optimiser step (+ the tiny validation pass).
        trainer = Trainer(
            module, batch_size=s.train_batch, epochs=1, learning_rate=1e-3, seed=0, device="cpu"
        )
        return trainer.fit(train, val)

    m = timed(step, s.slow_reps, warmup=1)
    return _result(m, batch=s.train_batch)


@measurement("train_baseline")
def _train_baseline(s: Sizes) -> dict:
    import geomloss
    import torch
    from baselines import PaperStyleRNN, paper_style_train_step

    torch.manual_seed(0)
    model = PaperStyleRNN(INPUT_SIZE, HIDDEN_SIZE, OUTPUTS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = geomloss.SamplesLoss(blur=0.2)
    targets = _train_data(s.train_batch, s.seq_len)
    m = timed(
        lambda: paper_style_train_step(model, optimizer, criterion, targets), s.slow_reps, warmup=1
    )
    return _result(m, batch=s.train_batch)


@measurement("html")
def _html(s: Sizes) -> dict:
    from baselines import paper_style_figure_3d, write_html_inline

    from hmmrnn.reverse import Reverse, plot_trajectory_3d

    module = _module()
    result = Reverse(module, num_seq=s.html_pca_seq, seq_len=s.seq_len, seed=0).gen_data()
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours" / "latent_trajectory_3d.html"
        ours.parent.mkdir()
        t0 = time.perf_counter()
        plot_trajectory_3d(result, ours, num_points=s.html_points)
        ours_seconds = time.perf_counter() - t0
        ours_bytes = ours.stat().st_size
        js = ours.parent / "plotly.min.js"
        js_bytes = js.stat().st_size if js.exists() else 0
        base = Path(tmp) / "baseline.html"
        t0 = time.perf_counter()
        projected = result.projected.reshape(-1, result.projected.shape[-1])
        observations = result.observations.reshape(-1)
        write_html_inline(paper_style_figure_3d(projected, observations, s.html_points), base)
        base_seconds = time.perf_counter() - t0
        base_bytes = base.stat().st_size
    return {
        "ours_bytes": ours_bytes,
        "plotly_js_bytes": js_bytes,
        "baseline_bytes": base_bytes,
        "ours_seconds": ours_seconds,
        "baseline_seconds": base_seconds,
        "num_points": s.html_points,
    }


def _snakemake(args: list[str], cwd: Path, timeout: float) -> float:
    """Run ``snakemake ARGS`` in ``cwd``; its wall time in seconds (raises on failure)."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed in {cwd} (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return seconds


def _workflow_copy(tmp: Path) -> Path:
    """Snakefile, workflow/, config/ and .test/config/ copied into an empty directory."""
    dest = tmp / "wf"
    dest.mkdir()
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    shutil.copytree(REPO / "workflow", dest / "workflow")
    shutil.copytree(REPO / "config", dest / "config")
    shutil.copytree(REPO / ".test" / "config", dest / ".test" / "config")
    return dest


@measurement("dryrun_complete")
def _dryrun_complete(s: Sizes) -> dict:
    """``snakemake -n`` right after a complete run (nothing left to do)."""
    if s.default_config_run:
        config, label = [], "config/config.yaml"
    else:
        config, label = ["--configfile", ".test/config/config.yaml"], ".test/config/config.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        wf = _workflow_copy(Path(tmp))
        run_seconds = _snakemake(["--cores", "2", "--quiet", *config], wf, timeout=4 * 3600)
        times = [_snakemake(["-n", *config], wf, timeout=600) for _ in range(s.dry_reps)]
    return {
        "times": times,
        "seconds": statistics.median(times),
        "config": label,
        "complete_run_seconds": run_seconds,
    }


@measurement("dryrun_sweep")
def _dryrun_sweep(s: Sizes) -> dict:
    """``snakemake -n`` of the 144-model sweep on an empty tree (the DAG of every job)."""
    with tempfile.TemporaryDirectory() as tmp:
        wf = _workflow_copy(Path(tmp))
        args = ["-n", "--configfile", "config/sweep.yaml"]
        times = [_snakemake(args, wf, timeout=600) for _ in range(s.dry_reps)]
    return {"times": times, "seconds": statistics.median(times), "config": "config/sweep.yaml"}


# --------------------------------------------------------------------------------------------
# The parent: run every measurement in its own process, then build the table


def run_child(name: str, mode: str, timeout: float, threads: int | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its result dict (or ``{"error": ...}``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", name, "--json", f"--{mode}"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            out = json.loads(line[len(RESULT_PREFIX) :])
            out["process_seconds"] = wall
            out["process_peak_bytes"] = _children_maxrss()
            return out
    return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}"}


def _children_maxrss() -> int:
    # RUSAGE_CHILDREN is the largest of all children so far: only a cross-check.
    ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024


ORDER = [
    "hmm_ours",
    "hmm_baseline",
    "rnn_ours",
    "rnn_baseline",
    "transitions_ours",
    "transitions_baseline",
    "match_ours",
    "match_dense",
    "test_ours",
    "pca_ours",
    "pca_baseline",
    "train_ours",
    "train_baseline",
    "html",
    "dryrun_complete",
    "dryrun_sweep",
]


def _fmt_s(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def _fmt_b(nbytes: float | None) -> str:
    if nbytes is None:
        return "n/a"
    if nbytes >= 1e9:
        return f"{nbytes / 1e9:.2f} GB"
    if nbytes >= 1e6:
        return f"{nbytes / 1e6:.0f} MB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"
    return f"{nbytes / 1e3:.0f} kB"


def _fmt_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "n/a"
    return f"{r:.0f}x" if r >= 10 else f"{r:.2f}x"


def _mark(ok: bool | None) -> str:
    return {True: "yes", False: "**NO**", None: "n/a"}[ok]


@dataclass
class Row:
    what: str
    size: str
    baseline: str
    ours: str
    result: str
    target: str
    met: bool | None


def _base_label(r: dict, unit: str) -> str:
    """The baseline's time, saying from which size it was extrapolated if it was."""
    scale = r.get("scale", 1.0)
    if abs(scale - 1.0) > 1e-9:
        return f"{_fmt_s(r['seconds_scaled'])} (extrapolated x{scale:g} from {r['n']} {unit})"
    return _fmt_s(r["seconds_scaled"])


def build_rows(results: dict[str, dict], s: Sizes) -> list[Row]:
    """Table rows (one per target) from the measurement results.

    A row whose measurements were not run is left out; one whose measurement failed says so.
    """
    rows: list[Row] = []

    def get(*names: str, keys: tuple[str, ...] = ("seconds",)) -> list[dict] | None:
        """The results of ``names``, or None after adding an error row if one is unusable."""
        found = [results.get(n) or {} for n in names]
        if all(k in r for r in found for k in keys):
            return found
        errors = [r["error"] for r in found if "error" in r] or ["not measured"]
        rows.append(Row(what, size, "n/a", "n/a", f"error: {errors[0][:100]}", target, None))
        return None

    def ran(*names: str) -> bool:
        return any(n in results for n in names)

    def speed_row(ours_name: str, base_name: str, unit: str, minimum: float) -> None:
        got = get(ours_name, base_name, keys=("seconds", "seconds_scaled"))
        if got is None:
            return
        ours, base = got
        ratio = base["seconds_scaled"] / ours["seconds"]
        rows.append(
            Row(
                what,
                size,
                _base_label(base, unit),
                f"{_fmt_s(ours['seconds'])}, peak {_fmt_b(ours['peak_bytes'])}",
                f"{_fmt_ratio(ratio)} faster",
                target,
                (ratio >= minimum) if minimum else None,
            )
        )

    size = f"{s.num_seq} x {s.seq_len}"
    if ran("hmm_ours", "hmm_baseline"):
        what, target = "HMM sampling (hmmlearn, per sequence)", ">= 100x"
        speed_row("hmm_ours", "hmm_baseline", "seqs", 100)
    if ran("rnn_ours", "rnn_baseline"):
        what, target = "RNN generation (paper-style loop per sequence and step)", ">= 30x"
        speed_row("rnn_ours", "rnn_baseline", "seqs", 30)
    if ran("transitions_ours", "transitions_baseline"):
        what, target = "Transition counts (Python loop)", "-"
        speed_row("transitions_ours", "transitions_baseline", "seqs", 0)

    size = f"n = {s.match_n}, T = {s.seq_len}, HMM vs HMM"
    dense = results.get("match_dense") or {}
    if ran("match_ours", "match_dense"):
        what, target = "Sinkhorn matching (dense log-domain, eps 0.1)", ">= 20x"
        got = get("match_ours", "match_dense", keys=("seconds", "seconds_scaled", "extra_bytes"))
        if got is not None:
            ours, dense = got
            ratio = dense["seconds_scaled"] / ours["seconds"]
            rows.append(
                Row(
                    what,
                    size,
                    f"{_base_label(dense, 'seqs, time ~ n^2')}, "
                    f"{dense.get('n_iter')} iterations at n = {dense['n']}",
                    f"{_fmt_s(ours['seconds'])}, {ours.get('n_iter')} iterations",
                    f"{_fmt_ratio(ratio)} faster",
                    target,
                    ratio >= 20,
                )
            )
            scale = dense.get("scale", 1.0)
            note = f" (extrapolated x{scale:g} from n = {dense['n']})" if scale != 1 else ""
            rows.append(
                Row(
                    "Sinkhorn matching: extra memory",
                    size,
                    _fmt_b(dense["extra_bytes_scaled"]) + note,
                    _fmt_b(ours["extra_bytes"]),
                    _fmt_b(ours["extra_bytes"]),
                    "<= 0.5 GB",
                    ours["extra_bytes"] <= 0.5e9,
                )
            )

    if ran("test_ours"):
        what, target = "Full test (2 HMM sets + RNN set, 2 matchings, metrics)", "<= 3 min, 3 GB"
        size = f"n = {s.test_n}, T = {s.seq_len}, untrained RNN"
        got = get("test_ours", keys=("seconds", "peak_bytes"))
        if got is not None:
            (test,) = got
            base = "n/a"
            if "seconds_scaled" in dense:
                # Two matchings, each ~ (test_n / match_n)^2 times the dense one at match_n.
                factor = (s.test_n / s.match_n) ** 2
                base = (
                    f"~{_fmt_s(2 * dense['seconds_scaled'] * factor)}, "
                    f"+{_fmt_b(dense['extra_bytes_scaled'] * factor)} "
                    "(extrapolated: 2 dense matchings, n^2)"
                )
            ours_text = f"{_fmt_s(test['seconds'])}, peak {_fmt_b(test['peak_bytes'])}"
            ok = test["seconds"] <= 180 and test["peak_bytes"] <= 3e9
            rows.append(Row(what, size, base, ours_text, ours_text, target, ok))

    if ran("pca_ours", "pca_baseline"):
        what, target = "Hidden states for PCA (paper-style loop; ours incl. the PCA)", ">= 10x"
        size = f"{s.pca_steps} steps"
        speed_row("pca_ours", "pca_baseline", "steps", 10)

    if ran("train_ours", "train_baseline"):
        what, target = "One training step (geomloss blur 0.2, Adam, clip)", "no slower"
        size = f"batch {s.train_batch}, T = {s.seq_len}, I = {INPUT_SIZE}, H = {HIDDEN_SIZE}"
        got = get("train_ours", "train_baseline")
        if got is not None:
            ours, base = got
            ratio = base["seconds"] / ours["seconds"]
            rows.append(
                Row(
                    what,
                    size,
                    _fmt_s(base["seconds"]),
                    _fmt_s(ours["seconds"]),
                    f"{_fmt_ratio(ratio)} as fast",
                    target,
                    ratio >= 1.0,
                )
            )

    if ran("html"):
        what, target, size = "3D trajectory HTML", "<= 1 MB", f"{s.html_points} points"
        got = get("html", keys=("ours_bytes", "baseline_bytes"))
        if got is not None:
            (html,) = got
            rows.append(
                Row(
                    what,
                    size,
                    f"{_fmt_b(html['baseline_bytes'])} (a trace per step, plotly.js inline)",
                    f"{_fmt_b(html['ours_bytes'])} (+ shared plotly.min.js "
                    f"{_fmt_b(html['plotly_js_bytes'])})",
                    f"{html['baseline_bytes'] / html['ours_bytes']:.0f}x smaller",
                    target,
                    html["ours_bytes"] <= 1e6,
                )
            )

    for name, what, limit in (
        ("dryrun_complete", "Dry run after a complete run", 3),
        ("dryrun_sweep", "Dry run of the 144-model sweep (empty tree)", 20),
    ):
        if not ran(name):
            continue
        target, size = f"<= {limit} s", ""
        got = get(name)
        if got is not None:
            (dry,) = got
            size = dry["config"]
            if name == "dryrun_complete" and dry["config"] != "config/config.yaml":
                size += " (small config; --full times config/config.yaml)"
            seconds = _fmt_s(dry["seconds"])
            rows.append(Row(what, size, "-", seconds, seconds, target, dry["seconds"] <= limit))
    return rows


def render_table(rows: list[Row], s: Sizes, machine: str) -> str:
    """The Markdown block that goes between the README markers."""
    lines = [
        f"Measured by `python benchmarks/run_all.py --{s.mode} --write-readme` on {machine}; "
        "medians of repeated runs, each measurement in its own process. Baselines are the "
        "straightforward implementations in `benchmarks/baselines.py` and "
        "`benchmarks/reference.py`; numbers marked *extrapolated* were measured on the size "
        "given and scaled (linearly in the number of sequences or steps, by n^2 for dense "
        "matching).",
        "",
        "| What | Size | Baseline | Ours | Result | Target | Met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.what} | {r.size} | {r.baseline} | {r.ours} | {r.result} | {r.target} "
            f"| {_mark(r.met)} |"
        )
    return "\n".join(lines)


def replace_between_markers(text: str, block: str) -> str | None:
    """``text`` with everything between the performance markers replaced by ``block``.

    Returns None when the markers are missing, duplicated or out of order.
    """
    if text.count(START_MARKER) != 1 or text.count(END_MARKER) != 1:
        return None
    start = text.index(START_MARKER) + len(START_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        return None
    return text[:start] + "\n" + block.strip("\n") + "\n" + text[end:]


def machine_description(threads: int | None = None) -> str:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    cpus = os.cpu_count()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return (
        f"{cpus} CPU cores ({platform.machine()}, {platform.system()}), Python "
        f"{platform.python_version()}, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads"
        + "".join(
            f", {k}={os.environ[k]}"
            for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")
            if k in os.environ
        )
    )


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="default: subsampled slow baselines")
    size.add_argument("--full", action="store_true", help="full-size baselines (about 30 min)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: check that all runs")
    parser.add_argument(
        "--only",
        action="append",
        choices=ORDER,
        metavar="NAME",
        help=f"run only these measurements ({', '.join(ORDER)})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="run --only measurements in this process and print JSON results",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="replace the README text between the performance markers",
    )
    parser.add_argument("--output", type=Path, help="also write all results as JSON here")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="measure nothing: rebuild the table from a saved --output file",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds allowed per measurement process"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    mode = "full" if args.full else "smoke" if args.smoke else "quick"
    sizes = MODES[mode]
    names = args.only or ORDER

    if args.json:  # child: measure in this process
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        for name in names:
            try:
                out = MEASUREMENTS[name](sizes)
            except Exception as exc:  # reported in the table rather than killing the run
                out = {"error": f"{type(exc).__name__}: {exc}"}
            print(RESULT_PREFIX + json.dumps({"name": name, **out}, default=float), flush=True)
        return 0

    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        return report(saved["results"], MODES[saved["mode"]], saved["machine"], args)

    machine = machine_description(args.threads)
    load_start = _load()
    print(f"hmmrnn benchmarks, {mode} mode, on {machine}, load {load_start}", flush=True)
    results: dict[str, dict] = {}
    for name in names:
        print(f"  {name} ...", end="", flush=True)
        out = run_child(name, mode, args.timeout, args.threads)
        results[name] = out
        if "error" in out:
            print(f" ERROR {out['error'][:500]}", flush=True)
        elif "seconds" in out:
            scaled = out.get("seconds_scaled", out["seconds"])
            extra = f" (x{out['scale']:g} -> {_fmt_s(scaled)})" if out.get("scale", 1) != 1 else ""
            mem = f", peak {_fmt_b(out['peak_bytes'])}" if "peak_bytes" in out else ""
            mem += f", extra {_fmt_b(out['extra_bytes'])}" if "extra_bytes" in out else ""
            print(f" {_fmt_s(out['seconds'])}{extra}{mem}", flush=True)
        else:
            print(" done", flush=True)

    machine += f", 1-min load average {load_start} at the start and {_load()} at the end"
    if args.output:
        args.output.write_text(
            json.dumps(
                {"mode": mode, "sizes": asdict(sizes), "machine": machine, "results": results},
                indent=2,
                default=float,
            )
        )
    return report(results, sizes, machine, args)


def report(results: dict[str, dict], sizes: Sizes, machine: str, args) -> int:
    """Print the table, write it into the README if asked; exit status 1 if anything failed."""
    rows = build_rows(results, sizes)
    table = render_table(rows, sizes, machine)
    print()
    print(table)
    if args.write_readme:
        text = README.read_text(encoding="utf-8")
        new = replace_between_markers(text, table)
        if new is None:
            print(
                f"\n{README}: the markers {START_MARKER} and {END_MARKER} are missing (or not "
                "one pair); the table above was not written. Add them where the table belongs."
            )
        elif new != text:
            README.write_text(new, encoding="utf-8")
            print(f"\nwrote the table into {README}")
    failed = [r.what for r in rows if r.met is False]
    if failed:
        print("\ntargets missed: " + "; ".join(failed))
    errors = [name for name, r in results.items() if "error" in r]
    if errors:
        print("\nmeasurements that failed: " + ", ".join(errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
