"""Time hmmrnn.sinkhorn.Sinkhorn against the dense reference on HMM-like sequences.

Each measurement runs in its own subprocess so that peak memory (``ru_maxrss``, which also sees
torch allocations) is attributable to it; the extra memory is the peak minus the resident size
after loading inputs and libraries. Example::

    python benchmarks/bench_matching.py --n 2000 10000 --reference-n 2000 --repeats 3

On a shared machine wall time is noisy; CPU seconds (``time.process_time``, both threads) and
the iteration count (deterministic) are reported beside it, with the load average.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _measure(kind: str, n: int, seq_len: int, seed: int, acceleration: str) -> dict:
    """Run one matching in this process and return time, iterations and memory."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from reference import dense_sinkhorn_match, markov_observations, one_hot_flat

    from hmmrnn.sinkhorn import Sinkhorn, _kernels

    rng = np.random.default_rng(seed)
    x = one_hot_flat(markov_observations(n, seq_len, rng), 3)
    y = one_hot_flat(markov_observations(n, seq_len, rng), 3)
    if kind == "ours":
        _kernels(True)  # compile outside the timed region (cached on disk after the first run)
    import torch

    if kind == "reference":
        dense_sinkhorn_match(x[:8], y[:8], dtype=torch.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu_start = time.perf_counter(), time.process_time()
    if kind == "ours":
        res = Sinkhorn(acceleration=None if acceleration == "none" else acceleration).match(x, y)
        n_iter, distinct = res.n_iter, res.distinct_fraction
    else:  # the paper's implementation works in float32
        res = dense_sinkhorn_match(x, y, dtype=torch.float32)
        n_iter, distinct = res["n_iter"], res["distinct_fraction"]
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "kind": kind,
        "n": n,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load": float(open("/proc/loadavg").read().split()[0]),
        "n_iter": n_iter,
        "distinct_fraction": distinct,
        "extra_mb": (peak - base) / 1024,
    }


def _run(kind: str, n: int, seq_len: int, seed: int, acceleration: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(n), str(seq_len), str(seed), acceleration],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2000], help="set sizes (ours)")
    parser.add_argument(
        "--reference-n", type=int, nargs="*", default=None, help="sizes for the reference"
    )
    parser.add_argument("--seq-len", type=int, default=30)
    parser.add_argument(
        "--acceleration", default="anderson", choices=["anderson", "overrelaxation", "none"]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, n, seq_len, seed, acceleration = args.worker
        print(json.dumps(_measure(kind, int(n), int(seq_len), int(seed), acceleration)))
        return
    ref_sizes = args.n if args.reference_n is None else args.reference_n
    rows = []
    for n in sorted(set(args.n) | set(ref_sizes)):
        row = {"n": n}
        for kind, reps in (("ours", args.repeats), ("reference", args.reference_repeats)):
            if (kind == "ours" and n not in args.n) or (kind == "reference" and n not in ref_sizes):
                continue
            runs = [_run(kind, n, args.seq_len, seed, args.acceleration) for seed in range(reps)]
            row[kind] = {
                "seconds": statistics.median(r["seconds"] for r in runs),
                "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
                "load": max(r["load"] for r in runs),
                "extra_mb": max(r["extra_mb"] for r in runs),
                "n_iter": statistics.median(r["n_iter"] for r in runs),
                "reps": reps,
            }
            print(f"n={n} {kind}: {runs}", file=sys.stderr)
        rows.append(row)
    print(
        f"\nseq_len={args.seq_len}, acceleration={args.acceleration}, "
        "medians over repetitions (seeds 0..r-1)\n"
    )
    print(
        "| n | ours s | ours CPU s | ours iters | ours extra MB | load | ref s | ref iters "
        "| ref extra MB | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        o, r = row.get("ours"), row.get("reference")

        def cell(d, key, fmt):
            return format(d[key], fmt) if d else "-"

        ratio = f"{r['seconds'] / o['seconds']:.1f}x" if (o and r) else "-"
        print(
            f"| {row['n']} | {cell(o, 'seconds', '.2f')} | {cell(o, 'cpu_seconds', '.2f')} | "
            f"{cell(o, 'n_iter', '.0f')} | {cell(o, 'extra_mb', '.0f')} | "
            f"{cell(o or r, 'load', '.1f')} | {cell(r, 'seconds', '.2f')} | "
            f"{cell(r, 'n_iter', '.0f')} | {cell(r, 'extra_mb', '.0f')} | {ratio} |"
        )


if __name__ == "__main__":
    main()
