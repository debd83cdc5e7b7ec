"""Fidelity benchmark: train each preset with a recipe, then test HMM vs RNN samples.

For every experiment of a workflow configuration (default ``config/fidelity.yaml``) this
samples the training data, trains one RNN per learning rate (the lowest validation loss wins,
as in the workflow), generates fresh RNN sequences and compares them with two fresh HMM sample
sets through :func:`hmmrnn.testing.compare`. It prints a markdown table of the issue's
fidelity targets:

* every entry of ``(P_hmm - P_rnn) ** 2`` (symbol transition matrices) at most 0.001,
* 1- to 4-gram total variation at most 0.02,
* mean matched Euclidean distance within 1 % of the HMM-vs-HMM baseline,

with the wall time of training on this machine (and the load average, since the machine may
be shared), each gap with its standard error, and a control: the same test with a third,
independent HMM set in place of the RNN (a perfect emulator, so pure sampling noise).
``--write-readme`` puts the table between ``<!-- fidelity:start -->`` and
``<!-- fidelity:end -->`` in README.md, replacing the rows of the experiments run and keeping
the others (so one preset can be rerun alone).

    python benchmarks/fidelity.py --presets HMMSmall HMMMedium --threads 2
    python benchmarks/fidelity.py --presets HMMMedium --seeds 0 1 2   # run-to-run variation
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch
import yaml

from hmmrnn._utils import as_rng, write_json
from hmmrnn.config import expand_experiments, stage_seed
from hmmrnn.hmm import HMM, one_hot, split_labels
from hmmrnn.model import NoiseRNN
from hmmrnn.stages import (
    compare_model,
    compare_to_hmm,
    hmm_test_sets,
    module_kwargs,
    trainer_kwargs,
)
from hmmrnn.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
TARGET_SQ = 1e-3
TARGET_TV = 0.02
TARGET_GAP = 0.01
START, END = "<!-- fidelity:start -->", "<!-- fidelity:end -->"


def train_experiment(cfg, log=print, device: str = "cpu") -> dict:
    """Sample data, train every learning rate; return the best module and timings."""
    hmm = HMM(**dataclasses.asdict(cfg.hmm))
    rng = as_rng(stage_seed(cfg.seed, "data"))
    obs, _ = hmm.sample(cfg.data.num_seq, cfg.data.seq_len, rng)
    split = split_labels(cfg.data.num_seq, cfg.data.split, rng)
    train, val = one_hot(obs[split == 0], hmm.outputs), one_hot(obs[split == 1], hmm.outputs)
    best = None
    seconds = 0.0
    for index, lr in enumerate(cfg.training.learning_rates):
        seed = stage_seed(cfg.seed, "training", index)
        torch.manual_seed(seed)
        module = NoiseRNN(**module_kwargs(cfg.rnn, hmm.outputs))
        trainer = Trainer(
            module, learning_rate=lr, seed=seed, device=device, **trainer_kwargs(cfg.training)
        )
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = trainer.fit(train, val)
        elapsed = time.perf_counter() - t0
        seconds += elapsed
        log(
            f"  lr {lr:g}: {result.epochs_run} epochs in {elapsed:.0f} s, best val loss "
            f"{result.best_val_loss:.4f} at epoch {result.best_epoch + 1} "
            f"(load {load0:.1f} -> {os.getloadavg()[0]:.1f})"
        )
        if best is None or result.best_val_loss < best[1].best_val_loss:
            module = module.cpu()  # evaluation samples on the CPU, like the workflow's test
            module.load_state_dict(result.best_state_dict)
            best = (module, result, lr)
    module, result, lr = best
    return {
        "hmm": hmm,
        "module": module,
        "learning_rate": lr,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "train_seconds": seconds,
    }


def evaluate(cfg, hmm: HMM, module: NoiseRNN) -> dict:
    """Fidelity of ``module`` against fresh HMM samples (test section of ``cfg``)."""
    seed = stage_seed(cfg.seed, "test")
    return compare_model(hmm, module, cfg.test, cfg.test_seq_len, seed).summary()


def control(cfg, hmm: HMM) -> dict:
    """The test of :func:`evaluate` with a third, independent HMM set in place of the RNN.

    A perfect emulator: its numbers are pure sampling noise, so they show which targets the
    number of test sequences can resolve. Sets A and B are those of :func:`evaluate`.
    """
    obs_a, obs_b, _ = hmm_test_sets(hmm, cfg.test, cfg.test_seq_len, stage_seed(cfg.seed, "test"))
    rng = as_rng(stage_seed(cfg.seed, "test", 1))
    obs_c, _ = hmm.sample(cfg.test.num_seq, cfg.test_seq_len, rng)
    return compare_to_hmm(hmm, obs_a, obs_b, obs_c, cfg.test).summary()


def passes(row: dict) -> dict:
    tv = max(v for k, v in row.items() if k.startswith("kgram_tv_k") and k.endswith("_rnn"))
    return {
        "transition": row["transition_sq_diff_max"] <= TARGET_SQ,
        "kgram": tv <= TARGET_TV,
        "euclidean": abs(row["euclidean_gap"]) <= TARGET_GAP,
    }


def _mark(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def _failed(ok: dict) -> str:
    failed = [name for name, good in ok.items() if not good]
    return "meets all" if not failed else "fails " + ", ".join(failed)


def table(rows: list[dict], threads: int = 2) -> str:
    """Markdown table of the fidelity targets (and of the exact-HMM control, where run)."""
    with_control = any("control" in r for r in rows)
    head = (
        f"| experiment | train time ({threads} threads) | epochs | max (ΔP)² ≤ 1e-3 (floor) | "
        "k-gram TV k=1..4 ≤ 0.02 (floor) | Euclidean gap ≤ 1 % (± s.e.) | "
        "loglik/step RNN vs HMM |"
    )
    rule = "|---|---|---|---|---|---|---|"
    if with_control:
        head += " exact HMM in place of the RNN: max (ΔP)², max TV, gap |"
        rule += "---|"
    lines = [head, rule]
    for r in rows:
        ok = passes(r)
        tv = " / ".join(f"{r[f'kgram_tv_k{k}_rnn']:.3f}" for k in range(1, 5))
        fl = " / ".join(f"{r[f'kgram_tv_k{k}_floor']:.3f}" for k in range(1, 5))
        ll = (
            f"{r['loglik_per_step_rnn']:.4f} vs {r['loglik_per_step_hmm']:.4f}"
            if r.get("loglik_per_step_rnn") is not None
            else "n/a"
        )
        line = (
            f"| {r['experiment']} | {r['train_seconds'] / 60:.1f} min (load {r['load']:.1f}) | "
            f"{r['epochs_run']} | {r['transition_sq_diff_max']:.2e} "
            f"({r['transition_sq_diff_max_floor']:.0e}) {_mark(ok['transition'])} | "
            f"{tv} ({fl}) {_mark(ok['kgram'])} | {100 * r['euclidean_gap']:+.2f} "
            f"± {100 * r['euclidean_gap_se']:.2f} % {_mark(ok['euclidean'])} | {ll} |"
        )
        c = r.get("control")
        if c is not None:
            tv_c = max(c[f"kgram_tv_k{k}_rnn"] for k in range(1, 5))
            line += (
                f" {c['transition_sq_diff_max']:.1e}, {tv_c:.3f}, "
                f"{100 * c['euclidean_gap']:+.2f} %: {_failed(passes(c))} |"
            )
        elif with_control:
            line += " - |"
        lines.append(line)
    return "\n".join(lines)


def _row_name(line: str) -> str | None:
    """The experiment named by a table row, None for the header, rule or other text."""
    cells = line.split("|")
    if len(cells) < 3 or not line.startswith("|") or set(cells[1].strip()) <= {"-"}:
        return None
    name = cells[1].strip()
    return None if name == "experiment" else name


def merge_tables(old: str, new: str) -> str:
    """``new``'s header and rows, plus the rows of ``old`` for experiments ``new`` lacks.

    Rerunning one preset then updates its row and keeps the others; an old row keeps its
    place, a new experiment goes at the end. When the headers differ (other columns) the old
    rows cannot be kept and ``new`` is returned as it is.
    """
    old_lines, new_lines = old.strip().splitlines(), new.strip().splitlines()
    if not old_lines or old_lines[0] != new_lines[0]:
        return new.strip()
    fresh = {_row_name(line): line for line in new_lines[2:]}
    rows = []
    for line in old_lines[2:]:
        name = _row_name(line)
        if name is not None:
            rows.append(fresh.pop(name, line))
    return "\n".join(new_lines[:2] + rows + list(fresh.values()))


def write_readme(text: str, path: Path) -> bool:
    """Merge ``text`` into the table between the fidelity markers (see :func:`merge_tables`).

    False (and no change) if the markers are absent.
    """
    readme = path.read_text()
    pattern = re.compile(re.escape(START) + r"\n?(.*?)\n?" + re.escape(END), re.DOTALL)
    found = pattern.search(readme)
    if not found:
        return False
    from hmmrnn._utils import atomic_path

    merged = merge_tables(found.group(1), text)
    with atomic_path(path) as tmp:
        tmp.write_text(pattern.sub(lambda _: f"{START}\n{merged}\n{END}", readme))
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "fidelity.yaml")
    parser.add_argument("--presets", nargs="+", help="experiment names to run (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu", help="where to train: cpu (default) or cuda")
    parser.add_argument("--json", type=Path, help="also write every summary to this JSON file")
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="update README.md's table: the rows of these experiments, the others kept",
    )
    parser.add_argument(
        "--no-control", action="store_true", help="skip the exact-HMM control (one test less)"
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="train and test each experiment with each of these seeds (default: its own)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    experiments = expand_experiments(yaml.safe_load(args.config.read_text()))
    names = args.presets or list(experiments)
    unknown = sorted(set(names) - set(experiments))
    if unknown:
        parser.error(f"unknown experiment(s) {unknown} (expected some of {sorted(experiments)})")

    if args.seeds and min(args.seeds) < 0:
        parser.error(f"--seeds must be non-negative integers (got {args.seeds})")
    runs = []  # (row name, config)
    for name in names:
        if not args.seeds:
            runs.append((name, experiments[name]))
        for seed in args.seeds or ():
            runs.append(
                (f"{name} (seed {seed})", dataclasses.replace(experiments[name], seed=seed))
            )

    rows = []
    for name, cfg in runs:
        print(f"{name}: training ({platform.node()}, {args.threads} threads)", flush=True)
        load = os.getloadavg()[0]
        trained = train_experiment(cfg, device=args.device)
        load = (load + os.getloadavg()[0]) / 2
        summary = evaluate(cfg, trained["hmm"], trained["module"])
        row = {
            "experiment": name,
            "load": load,
            **{k: v for k, v in trained.items() if k not in ("hmm", "module")},
            **summary,
        }
        if not args.no_control:
            row["control"] = control(cfg, trained["hmm"])
        rows.append(row)
        print(table([row], args.threads).splitlines()[-1], flush=True)

    text = table(rows, args.threads)
    print()
    print(text)
    if args.json:
        write_json(args.json, {"config": str(args.config), "threads": args.threads, "rows": rows})
    if args.write_readme:
        readme = ROOT / "README.md"
        if write_readme(text, readme):
            print(f"updated {readme}")
        else:
            print(f"{readme} has no {START} ... {END} markers; table not written")
    all_ok = all(all(passes(r).values()) for r in rows)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
