"""The seed's MANAGER: run experiments from Python through the same Snakemake workflow.

``Manager`` builds a workflow configuration from a preset (plus overrides) and asks
Snakemake, through its Python API, for that experiment's targets. Notebook users and the
command line therefore share one pipeline and one cache: a result computed by either is
reused by the other, and only stale steps rerun.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hmmrnn._utils import atomic_path, read_json
from hmmrnn.config import PRESETS, ConfigError, ExperimentConfig, deep_merge, resolve_experiment

logger = logging.getLogger("hmmrnn.manager")

__all__ = ["Manager", "MANAGER", "find_snakefile"]


def find_snakefile(start: str | os.PathLike | None = None) -> Path:
    """The workflow's top-level ``Snakefile``: beside the package in a source checkout, or in
    ``start`` / the current directory or one of its parents."""
    candidates = [Path(__file__).resolve().parents[2]]
    here = Path(start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    for folder in candidates:
        if (folder / "Snakefile").is_file() and (folder / "workflow" / "rules").is_dir():
            return folder / "Snakefile"
    raise FileNotFoundError(
        "could not find the hmmrnn Snakefile (with workflow/rules beside it) next to the "
        f"package or above {here}; pass snakefile=... to Manager"
    )


class Manager:
    """Run hmmrnn experiments through the Snakemake workflow.

    Parameters
    ----------
    config : ExperimentConfig or mapping, optional
        Overrides applied on top of the preset (a full ``ExperimentConfig`` is used as is).
    config_name : str
        Preset name (``DefaultConfig``, ``HMMSmall``, ..., ``Fully``, ``Cyclic``); also the
        experiment's result folder name unless ``name`` is given.
    name : str, optional
        Result folder name (``results/<name>``).
    results_dir : path
        Folder with one sub-folder per experiment, relative to ``workdir``.
    workdir : path, optional
        Snakemake's working directory (default: the folder holding the Snakefile).
    cores : int
        Cores Snakemake may use.
    snakefile : path, optional
        The workflow's ``Snakefile`` (found automatically in a source checkout).
    workflow_options : mapping, optional
        Extra top-level workflow settings (``device``, ``threads``, ``plots``, ``resources``).
    """

    def __init__(
        self,
        config: ExperimentConfig | Mapping[str, Any] | None = None,
        config_name: str = "DefaultConfig",
        *,
        name: str | None = None,
        results_dir: str = "results",
        workdir: str | os.PathLike | None = None,
        cores: int = 1,
        snakefile: str | os.PathLike | None = None,
        workflow_options: Mapping[str, Any] | None = None,
    ) -> None:
        if config_name not in PRESETS:
            raise ConfigError(
                f"unknown config_name {config_name!r} (expected one of {sorted(PRESETS)})"
            )
        if isinstance(config, ExperimentConfig):
            overrides = config.to_dict()
        else:
            overrides = dict(config or {})
        self.config_name = config_name
        self.name = name or config_name
        # Resolve now so that a bad configuration fails here, before Snakemake starts.
        self.config = resolve_experiment(config_name, overrides, where=f"experiments.{self.name}")
        self.overrides = overrides
        self.snakefile = Path(snakefile) if snakefile else find_snakefile(workdir)
        self.workdir = Path(workdir) if workdir else self.snakefile.parent
        self.results_dir = results_dir
        self.cores = cores
        self.workflow_options = dict(workflow_options or {})

    # -- paths -------------------------------------------------------------------------------
    @property
    def experiment_dir(self) -> Path:
        return self.workdir / self.results_dir / self.name

    def setup_dir(self) -> Path:
        """Create the experiment's result folders; return the experiment folder."""
        for sub in ("data", "figs", "models"):
            (self.experiment_dir / sub).mkdir(parents=True, exist_ok=True)
        return self.experiment_dir

    # -- configuration -----------------------------------------------------------------------
    def workflow_config(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The Snakemake configuration that runs this experiment (or the given presets)."""
        if names is None:
            experiments = {self.name: {"preset": self.config_name, **self.overrides}}
        else:
            experiments = {n: {"preset": n} for n in names}
        return deep_merge(
            {"results_dir": self.results_dir, "experiments": experiments}, self.workflow_options
        )

    def save_config(self, path: str | os.PathLike | None = None) -> Path:
        """Write this experiment's workflow configuration as YAML (default: its folder)."""
        path = Path(path) if path else self.experiment_dir / "workflow_config.yaml"
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.workflow_config(), sort_keys=False))
        return path

    @classmethod
    def load_config(cls, path: str | os.PathLike, **kwargs: Any) -> Manager:
        """A Manager for the single experiment of a YAML file written by :meth:`save_config`."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        experiments = data.get("experiments") or {}
        if len(experiments) != 1:
            raise ConfigError(
                f"{path}: expected exactly one experiment (got {sorted(experiments) or 'none'})"
            )
        ((name, entry),) = experiments.items()
        entry = dict(entry)
        preset = entry.pop("preset", "DefaultConfig")
        options = {k: v for k, v in data.items() if k not in ("experiments", "results_dir")}
        return cls(
            entry,
            preset,
            name=name,
            results_dir=data.get("results_dir", "results"),
            workflow_options=options,
            **kwargs,
        )

    # -- running -----------------------------------------------------------------------------
    def _run(self, targets: Sequence[str], config: Mapping[str, Any], verbose: bool) -> None:
        from snakemake.api import SnakemakeApi
        from snakemake.settings.enums import Quietness
        from snakemake.settings.types import (
            ConfigSettings,
            DAGSettings,
            OutputSettings,
            ResourceSettings,
        )

        quiet = None if verbose else {Quietness.PROGRESS, Quietness.RULES}
        with SnakemakeApi(OutputSettings(quiet=quiet)) as api:
            workflow = api.workflow(
                resource_settings=ResourceSettings(cores=self.cores),
                config_settings=ConfigSettings(config=dict(config), replace_workflow_config=True),
                snakefile=self.snakefile,
                workdir=self.workdir,
            )
            workflow.dag(DAGSettings(targets=list(targets))).execute_workflow()

    def _target(self, relative: str) -> str:
        return f"{self.results_dir}/{self.name}/{relative}"

    def run_training(self, verbose: bool = False):
        """Generate data and train (cached); return the selected model as an :class:`RNN`."""
        from hmmrnn.rnn import RNN

        self._run(
            [self._target("models/rnn.pth"), self._target("figs/loss_curves.pdf")],
            self.workflow_config(),
            verbose,
        )
        return RNN.from_checkpoint(self.experiment_dir / "models" / "rnn.pth")

    def run_tests(self, hmm=None, rnn=None, verbose: bool = False) -> dict[str, Any]:
        """Test results of this experiment (through the workflow), or of the given objects."""
        if hmm is not None and rnn is not None:
            from hmmrnn.testing import Test

            cfg = self.config
            return (
                Test(hmm, rnn, num_seq=cfg.test.num_seq, seq_len=cfg.test_seq_len, seed=cfg.seed)
                .run_all()
                .to_dict()
            )
        self._run([self._target("test_results.json")], self.workflow_config(), verbose)
        return read_json(self.experiment_dir / "test_results.json")

    def run_reverse(self, rnn=None, verbose: bool = False):
        """PCA results of this experiment (through the workflow), or of the given RNN."""
        from hmmrnn.reverse import PCAResult, Reverse

        if rnn is not None:
            cfg = self.config
            return Reverse(
                rnn,
                num_seq=cfg.reverse.num_seq,
                seq_len=cfg.reverse_seq_len,
                n_components=cfg.reverse.n_components,
                seed=cfg.seed,
            ).run_analysis(dynamics_mode=cfg.reverse.dynamics_mode)
        self._run([self._target("pca_results.npz")], self.workflow_config(), verbose)
        return PCAResult.load(self.experiment_dir / "pca_results.npz")

    def run_experiment(self, verbose: bool = False) -> dict[str, Any]:
        """Run (or reuse) every step of this experiment; return its ``summary.json``."""
        from hmmrnn.stages import experiment_outputs

        targets = experiment_outputs(self.results_dir, self.name)
        self._run(targets, self.workflow_config(), verbose)
        return read_json(self.experiment_dir / "summary.json")

    def run_multiple_experiments(
        self, config_names: Sequence[str], verbose: bool = False
    ) -> dict[str, Any]:
        """Run several presets in one DAG; return ``batch_results.json``."""
        unknown = [n for n in config_names if n not in PRESETS]
        if unknown:
            raise ConfigError(
                f"unknown config names {unknown} (expected some of {sorted(PRESETS)})"
            )
        self._run(["all"], self.workflow_config(config_names), verbose)
        return read_json(self.workdir / self.results_dir / "batch_results.json")


MANAGER = Manager
