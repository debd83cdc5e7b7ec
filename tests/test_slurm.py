"""SLURM profile tests on a throw-away single-node cluster (tests/slurm/cluster.py).

The cluster tests need root and Debian's slurm-wlm + munge (``.ci/install_slurm.sh``). Without
them they are skipped with the reason, except under CI (``CI=true``) where they fail.

Run: ``.venv/bin/pytest -m slurm tests/test_slurm.py`` (about 2-4 minutes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
TOY = ROOT / "tests" / "slurm" / "toy" / "Snakefile"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = VENV_BIN / "snakemake"
# The plugin polls job states; on the test cluster a first check after 5 s keeps runs short
# (the test cluster's MinJobAge is far above the 3x-delay the squeue check needs).
STATUS_DELAY_S = 5
SNAKEMAKE_TIMEOUT_S = 600


def _load_cluster_module():
    spec = importlib.util.spec_from_file_location(
        "hmmrnn_test_slurm_cluster", ROOT / "tests" / "slurm" / "cluster.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cluster_mod = _load_cluster_module()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = cluster_mod.unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the SLURM tests must run in CI)")
        pytest.skip(reason)
    cluster = cluster_mod.LocalSlurm(tmp_path_factory.mktemp("slurm-state"))
    try:
        cluster.start()
    except cluster_mod.SlurmUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


def _test_profile(cluster, dest: Path, gpu: bool = False) -> Path:
    """Copy profiles/slurm, filled in the way its comments tell a user to, for `cluster`.

    The test cluster has no accounting database: the account line is deleted and job states
    come from squeue. Requests above the single node's size are capped so jobs can start.
    """
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"]["slurm_partition"] = cluster.partition
    del profile["default-resources"]["slurm_account"]
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = STATUS_DELAY_S
    cpus = os.cpu_count() or 1
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        if "cpus_per_task" in resources:
            resources["cpus_per_task"] = min(resources["cpus_per_task"], cpus)
        if "mem_mb" in resources:
            resources["mem_mb"] = min(resources["mem_mb"], 4000)
    if gpu:
        profile["set-resources"]["train_rnn"]["gpu"] = 1
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


def _snakemake(
    args: list[str], timeout: float = SNAKEMAKE_TIMEOUT_S, cwd: Path | None = None
) -> tuple[int | None, str, float]:
    """Run snakemake in its own process group; kill the whole group on timeout.

    The plugin can wait forever on job states that never come (e.g. sacct without
    accounting), and ignores SIGTERM then, hence SIGKILL after a grace period.
    Returns (returncode, combined output, seconds); returncode is None on timeout.
    """
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(SNAKEMAKE), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        code = None
    return code, out, time.monotonic() - start


def _slurm_logs(workdir: Path) -> str:
    logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs)


def _real_workflow_ready() -> str | None:
    """Return why the repository's own workflow cannot be run yet, or None."""
    for path in ("Snakefile", ".test/config/config.yaml"):
        if not (ROOT / path).exists():
            return f"{path} does not exist yet"
    return None


# -- profile file (no cluster needed) ----------------------------------------------------------
def test_profile_has_placeholders_and_rule_resources():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    defaults = profile["default-resources"]
    assert defaults["slurm_partition"].startswith("CHANGE_ME")
    assert defaults["slurm_account"].startswith("CHANGE_ME")
    assert {"runtime", "mem_mb"} <= defaults.keys()
    # CPUs follow each rule's threads; a default cpus_per_task would override them.
    assert "cpus_per_task" not in defaults
    assert isinstance(profile["set-resources"]["train_rnn"], dict)
    assert profile["slurm-status-command"] in {"sacct", "squeue"}
    assert isinstance(profile["jobs"], int) and profile["jobs"] > 0
    assert isinstance(profile["retries"], int) and profile["retries"] >= 0


@pytest.mark.slow
def test_profile_resolves_in_a_dry_run(tmp_path):
    code, out, _ = _snakemake(
        ["--snakefile", str(TOY), "--directory", str(tmp_path), "--profile", str(PROFILE.parent)]
        + ["-n"],
        timeout=120,
    )
    assert code == 0, out[-3000:]
    jobs = {block.split(":")[0]: block for block in out.split("\nrule ")[1:]}
    assert jobs.keys() - {"all"} == {"make_data", "train_rnn"}, out[-3000:]
    for block in (jobs["make_data"], jobs["train_rnn"]):
        assert "slurm_partition=CHANGE_ME_partition" in block
        assert "slurm_account=CHANGE_ME_account" in block
    assert "slurm_extra=--requeue" in jobs["train_rnn"]
    assert "slurm_extra" not in jobs["make_data"]


# -- single-node cluster -------------------------------------------------------------------------
@pytest.mark.slurm
@pytest.mark.slow
def test_toy_workflow_on_slurm_matches_local_run(slurm_cluster, tmp_path):
    profile = _test_profile(slurm_cluster, tmp_path / "profile", gpu=True)
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    common = ["--snakefile", str(TOY), "--config", "seed=7"]

    slurm_args = ["--directory", str(on_slurm), "--profile", str(profile)]
    code, out, seconds = _snakemake([*common, *slurm_args])
    assert code == 0, f"SLURM run: rc={code} after {seconds:.0f} s\n{out[-4000:]}\n" + (
        _slurm_logs(on_slurm)
    )
    code, out, _ = _snakemake([*common, "--directory", str(local), "--cores", "2"])
    assert code == 0, out[-4000:]

    for name in ("results/numbers.txt", "results/total.json"):
        assert (on_slurm / name).read_bytes() == (local / name).read_bytes(), name
    env = json.loads((on_slurm / "results/env.json").read_text())
    assert env["SLURM_JOB_ID"], "train_rnn did not run inside a SLURM job"
    assert env["SLURM_JOB_PARTITION"] == slurm_cluster.partition
    assert Path(env["python"]).parent == VENV_BIN, "jobs must use the venv's python"
    assert env["SLURM_GPUS_ON_NODE"] == "1", "train_rnn's gpu request did not reach SLURM"
    assert json.loads((local / "results/env.json").read_text())["SLURM_JOB_ID"] is None


@pytest.mark.slurm
@pytest.mark.slow
def test_failing_job_makes_snakemake_fail_quickly(slurm_cluster, tmp_path):
    profile = _test_profile(slurm_cluster, tmp_path / "profile")
    workdir = tmp_path / "work"
    code, out, seconds = _snakemake(
        ["--snakefile", str(TOY), "--directory", str(workdir), "--profile", str(profile)]
        + ["results/never.txt"],
        timeout=180,
    )
    assert code is not None, f"snakemake hung on a failed job ({seconds:.0f} s)\n{out[-3000:]}"
    assert code != 0, out[-3000:]
    assert seconds < 120, f"failure took {seconds:.0f} s to be reported"
    assert "failing on purpose" in _slurm_logs(workdir)
    assert not (workdir / "results/never.txt").exists()


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    for folder in ("workflow", "config", ".test"):
        shutil.copytree(
            ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("results", "__pycache__")
        )
    return dest


def _same_result(a: Path, b: Path) -> None:
    """Assert two result files hold the same numbers (bytes where the format allows)."""
    import numpy as np
    import torch

    from hmmrnn.checkpoint import load_checkpoint

    if a.suffix in {".json", ".csv", ".parquet"}:
        assert a.read_bytes() == b.read_bytes(), a.name
    elif a.suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            assert x.files == y.files, a.name
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{a.name}:{key}")
    elif a.suffix == ".pth":
        # The zip members carry a temp-file name and a serialization id: compare contents.
        x, y = load_checkpoint(a), load_checkpoint(b)
        assert x["state_dict"].keys() == y["state_dict"].keys(), a.name
        for key, value in x["state_dict"].items():
            assert torch.equal(value, y["state_dict"][key]), f"{a.name}:{key}"
        for key in ("config", "history", "seed"):
            assert x[key] == y[key], f"{a.name}:{key}"
    else:
        raise AssertionError(f"no comparison for {a}")


# Figures (PDF/HTML carry creation dates), logs and plotly.min.js are only checked to exist.
COMPARED = {".json", ".csv", ".parquet", ".npz", ".pth"}


@pytest.mark.slurm
@pytest.mark.slow
def test_real_workflow_on_slurm_matches_local_run(slurm_cluster, tmp_path):
    reason = _real_workflow_ready()
    if reason:
        pytest.skip(f"repository workflow not ready: {reason}")
    config = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text())
    # Every training job asks SLURM for the test node's (fake) GPU through the workflow's own
    # resource setting; training itself stays on the configured CPU device.
    config.setdefault("resources", {})["train_gpus"] = 1
    profile = _test_profile(slurm_cluster, tmp_path / "profile")
    runs = {}
    for name, extra in (("slurm", ["--profile", str(profile)]), ("local", ["--cores", "2"])):
        workdir = _copy_workflow(tmp_path / name)
        (workdir / "ci.yaml").write_text(yaml.safe_dump(config))
        code, out, seconds = _snakemake([*extra, "--configfile", "ci.yaml"], cwd=workdir)
        assert code == 0, f"{name} run: rc={code} after {seconds:.0f} s\n{out[-4000:]}\n" + (
            _slurm_logs(workdir)
        )
        runs[name] = workdir / config["results_dir"]
        print(f"{name} run of .test config: {seconds:.0f} s")

    def listing(results: Path) -> set[Path]:
        return {p.relative_to(results) for p in results.rglob("*") if p.is_file()}

    files = listing(runs["local"])
    assert listing(runs["slurm"]) == files
    compared = sorted(p for p in files if p.suffix in COMPARED)
    assert any(p.suffix == ".pth" for p in compared) and any(p.suffix == ".npz" for p in compared)
    for rel in compared:
        _same_result(runs["slurm"] / rel, runs["local"] / rel)

    # The training jobs went through SLURM with the GPU request (finished jobs stay listed
    # for the test cluster's MinJobAge, an hour).
    jobs = subprocess.run(
        ["squeue", "--states=all", "--noheader", "-O", "Comment:200,tres-per-job:40,State:20"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    train = [line.split() for line in jobs if line.startswith("rule_train_rnn_wildcards")]
    n_train = sum(1 for p in files if p.suffix == ".pth" and p.name.startswith("lr_"))
    assert len(train) == n_train > 0, jobs
    assert all(fields[1:] == ["gres:gpu:1", "COMPLETED"] for fields in train), train


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
