"""Experiment configuration: typed sections, the seed's presets, overrides and sweeps.

An experiment is a preset plus overrides. Every section is a frozen dataclass whose fields
are validated when it is built from a mapping, so a bad key or value fails before any work
starts, with a message that names the key and what was expected::

    >>> cfg = resolve_experiment("HMMSmall", {"training": {"epochs": 20}})
    >>> cfg.hmm.states, cfg.training.epochs
    (2, 20)

The Snakemake workflow and the Python API share this module, so both accept exactly the
same configuration.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = [
    "ConfigError",
    "HMMConfig",
    "DataConfig",
    "RNNConfig",
    "TrainingConfig",
    "TestConfig",
    "ReverseConfig",
    "ExperimentConfig",
    "DefaultConfig",
    "HMMSmall",
    "HMMMedium",
    "HMMLarge",
    "HMMVeryLarge",
    "Fully",
    "Cyclic",
    "PRESETS",
    "resolve_experiment",
    "expand_experiments",
    "stage_seed",
    "deep_merge",
]


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


def _spec(default: Any = dataclasses.MISSING, *, factory: Any = None, **checks: Any) -> Any:
    """A dataclass field carrying its validation rules (min, max, choices, ...) as metadata."""
    if factory is not None:
        return field(default_factory=factory, metadata=checks)
    return field(default=default, metadata=checks)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


# What the settings of keep_weights' last-epochs modes default to when null (also the
# Trainer's defaults, kept here so that the configuration checks need no torch import).
KEEP_WEIGHTS_DEFAULTS = {"select_epochs": 10, "select_seq": 8192, "average_epochs": 10}


@dataclass(frozen=True)
class HMMConfig:
    """The Hidden Markov Model that generates the data (see :class:`hmmrnn.hmm.HMM`)."""

    states: int = _spec(3, min=1)
    outputs: int = _spec(3, min=1)
    stay_prob: float = _spec(0.95, min=0.0, max=1.0)
    target_prob: float = _spec(0.05, min=0.0, max=1.0)
    transition_method: str = _spec("stay_prob", choices=("stay_prob", "target_prob", "fully"))
    emission_method: str = _spec("gaussian", choices=("linear", "gaussian", "triangular"))
    start_prob: list | None = _spec(None, matrix=1)
    transition_matrix: list | None = _spec(None, matrix=2)
    emission_matrix: list | None = _spec(None, matrix=2)


@dataclass(frozen=True)
class DataConfig:
    """How many HMM sequences to sample for training, and how to split them."""

    num_seq: int = _spec(30000, min=3)
    seq_len: int = _spec(30, min=2)
    split: list = _spec(factory=lambda: [1 / 3, 1 / 3, 1 / 3], length=3, item_min=0.0)


@dataclass(frozen=True)
class RNNConfig:
    """The noise-driven ReLU RNN. ``input_size`` is the dimension of the Gaussian noise."""

    input_size: int = _spec(100, min=1)
    hidden_size: int = _spec(150, min=1)
    num_layers: int = _spec(1, min=1)
    rnn_bias: bool = _spec(False)
    readout_bias: bool = _spec(False)


@dataclass(frozen=True)
class TrainingConfig:
    """Sinkhorn-divergence training; one job per learning rate, the best validation loss wins."""

    batch_size: int = _spec(4096, min=1)
    epochs: int = _spec(500, min=1)
    learning_rates: list = _spec(factory=lambda: [0.001], item_min=0.0, min_length=1)
    tau: float = _spec(1.0, min=0.0, exclusive_min=True)
    grad_clip: float = _spec(0.9, min=0.0, exclusive_min=True)
    init: bool = _spec(True)
    loss: str = _spec("sinkhorn", choices=("sinkhorn", "energy", "gaussian", "laplacian"))
    p: int = _spec(2, choices=(1, 2))
    blur: float = _spec(0.2, min=0.0, exclusive_min=True)
    scaling: float = _spec(0.5, min=0.0, max=1.0, exclusive_min=True, exclusive_max=True)
    debias: bool = _spec(True)
    estimator: str = _spec("batch", choices=("batch", "halves"))
    betas: list = _spec(factory=lambda: [0.9, 0.9], length=2, item_min=0.0, item_max=1.0)
    weight_decay: float = _spec(0.0, min=0.0)
    checkpoint_every: int = _spec(10, min=1)
    early_stopping_patience: int | None = _spec(None, min=1)
    recurrent_identity: float = _spec(0.0, min=0.0)
    lr_schedule: str = _spec("constant", choices=("constant", "cosine"))
    lr_min: float = _spec(0.0, min=0.0)
    max_val_seq: int | None = _spec(None, min=1)
    activity_penalty: float = _spec(0.0, min=0.0)
    activity_limit: float = _spec(30.0, min=0.0, exclusive_min=True)
    keep_weights: str = _spec("best", choices=("best", "last", "fidelity", "average"))
    # null: KEEP_WEIGHTS_DEFAULTS under keep_weights: fidelity; refused otherwise.
    select_epochs: int | None = _spec(None, min=1)
    select_seq: int | None = _spec(None, min=2)
    # null: KEEP_WEIGHTS_DEFAULTS under keep_weights: average; refused otherwise.
    average_epochs: int | None = _spec(None, min=1)
    kgram_penalty: float = _spec(0.0, min=0.0)
    kgram_max_k: int = _spec(4, min=1)
    kgram_switch_lags: int = _spec(0, min=0)
    kgram_expected: bool = _spec(False)


@dataclass(frozen=True)
class TestConfig:
    """Comparing HMM and RNN samples (``seq_len: null`` means the training length)."""

    num_seq: int = _spec(30000, min=2)
    seq_len: int | None = _spec(None, min=2)
    epsilon: float = _spec(0.1, min=0.0, exclusive_min=True)
    max_iter: int = _spec(1000, min=1)
    tol: float = _spec(0.1, min=0.0, exclusive_min=True)
    max_kgram: int = _spec(4, min=1)
    dynamics_mode: str = _spec("full", choices=("full", "recurrence_only", "input_only"))


@dataclass(frozen=True)
class ReverseConfig:
    """PCA of the RNN's hidden states (``seq_len: null`` means the training length)."""

    num_seq: int = _spec(1000, min=1)
    seq_len: int | None = _spec(None, min=2)
    n_components: int = _spec(3, min=1)
    dynamics_mode: str = _spec("full", choices=("full", "recurrence_only", "input_only"))


_SECTIONS: dict[str, type] = {
    "hmm": HMMConfig,
    "data": DataConfig,
    "rnn": RNNConfig,
    "training": TrainingConfig,
    "test": TestConfig,
    "reverse": ReverseConfig,
}


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: every section plus the seed all its random streams derive from."""

    hmm: HMMConfig = field(default_factory=HMMConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rnn: RNNConfig = field(default_factory=RNNConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    test: TestConfig = field(default_factory=TestConfig)
    reverse: ReverseConfig = field(default_factory=ReverseConfig)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable, deterministically ordered mapping."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> ExperimentConfig:
        """Build and validate from a mapping; missing keys take this class's defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of sections (got {data!r})")
        allowed = set(_SECTIONS) | {"seed"}
        _reject_unknown(data, allowed, where)
        base = cls()
        kwargs: dict[str, Any] = {}
        for name, section_cls in _SECTIONS.items():
            merged = deep_merge(dataclasses.asdict(getattr(base, name)), data.get(name) or {})
            kwargs[name] = _build_section(section_cls, merged, f"{where}.{name}")
        seed = data.get("seed", base.seed)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"{where}.seed: expected a non-negative integer (got {seed!r})")
        kwargs["seed"] = int(seed)
        cfg = ExperimentConfig(**kwargs)
        _check_consistency(cfg, where)
        return cfg

    def with_overrides(
        self, overrides: Mapping[str, Any], where: str = "config"
    ) -> ExperimentConfig:
        """A new configuration with ``overrides`` (nested mapping) applied on top of this one."""
        return ExperimentConfig.from_dict(deep_merge(self.to_dict(), overrides), where)

    @property
    def test_seq_len(self) -> int:
        return self.test.seq_len or self.data.seq_len

    @property
    def reverse_seq_len(self) -> int:
        return self.reverse.seq_len or self.data.seq_len


# ---------------------------------------------------------------------------------------------
# Presets (the seed's configurations, plus the paper's Fully and Cyclic HMMs)
# ---------------------------------------------------------------------------------------------


def _chain(states: int) -> HMMConfig:
    """The paper's linear chains: stay probability 0.95, linear emissions, 3 outputs."""
    return HMMConfig(
        states=states, outputs=3, transition_method="stay_prob", emission_method="linear"
    )


@dataclass(frozen=True)
class DefaultConfig(ExperimentConfig):
    """Default settings: 3-state stay-probability chain, Gaussian emissions, paper training."""


@dataclass(frozen=True)
class HMMSmall(DefaultConfig):
    """2-state linear chain, 3 outputs (paper: sequence length 100)."""

    hmm: HMMConfig = field(default_factory=lambda: _chain(2))
    data: DataConfig = field(default_factory=lambda: DataConfig(seq_len=100))


@dataclass(frozen=True)
class HMMMedium(DefaultConfig):
    """3-state linear chain, 3 outputs (paper: sequence length 30)."""

    hmm: HMMConfig = field(default_factory=lambda: _chain(3))
    data: DataConfig = field(default_factory=lambda: DataConfig(seq_len=30))


@dataclass(frozen=True)
class HMMLarge(DefaultConfig):
    """4-state linear chain, 3 outputs (paper: sequence length 30)."""

    hmm: HMMConfig = field(default_factory=lambda: _chain(4))
    data: DataConfig = field(default_factory=lambda: DataConfig(seq_len=30))


@dataclass(frozen=True)
class HMMVeryLarge(DefaultConfig):
    """5-state linear chain, 3 outputs (paper: sequence length 40)."""

    hmm: HMMConfig = field(default_factory=lambda: _chain(5))
    data: DataConfig = field(default_factory=lambda: DataConfig(seq_len=40))


@dataclass(frozen=True)
class Fully(DefaultConfig):
    """Paper's fully connected 3-state HMM with triangular emissions."""

    hmm: HMMConfig = field(
        default_factory=lambda: HMMConfig(
            states=3,
            outputs=3,
            stay_prob=0.95,
            transition_method="fully",
            emission_method="triangular",
        )
    )
    data: DataConfig = field(default_factory=lambda: DataConfig(seq_len=30))
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(epochs=1000, grad_clip=0.3)
    )


@dataclass(frozen=True)
class Cyclic(DefaultConfig):
    """Paper's 4-state cyclic HMM (custom transition and emission matrices)."""

    hmm: HMMConfig = field(
        default_factory=lambda: HMMConfig(
            states=4,
            outputs=3,
            transition_matrix=[
                [0.95, 0.025, 0.0, 0.025],
                [0.025, 0.95, 0.025, 0.0],
                [0.0, 0.025, 0.95, 0.025],
                [0.025, 0.0, 0.025, 0.95],
            ],
            emission_matrix=[
                [0.9, 0.1, 0.0],
                [0.1, 0.9, 0.0],
                [0.0, 0.1, 0.9],
                [0.0, 0.9, 0.1],
            ],
        )
    )
    data: DataConfig = field(default_factory=lambda: DataConfig(seq_len=40))
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(grad_clip=0.3))


PRESETS: dict[str, type[ExperimentConfig]] = {
    cls.__name__: cls
    for cls in (DefaultConfig, HMMSmall, HMMMedium, HMMLarge, HMMVeryLarge, Fully, Cyclic)
}


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively with ``overrides`` (neither input is modified).

    Mappings merge key by key; any other value (lists and matrices included) replaces.
    """
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_experiment(
    preset: str | type[ExperimentConfig] = "DefaultConfig",
    overrides: Mapping[str, Any] | None = None,
    where: str = "config",
) -> ExperimentConfig:
    """The preset's configuration with ``overrides`` applied, validated."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ConfigError(
                f"{where}.preset: unknown preset {preset!r} (expected one of {sorted(PRESETS)})"
            )
        preset_cls = PRESETS[preset]
    else:
        preset_cls = preset
    return preset_cls().with_overrides(overrides or {}, where)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def expand_experiments(config: Mapping[str, Any]) -> dict[str, ExperimentConfig]:
    """All experiments of a workflow configuration, sweeps expanded, keyed by result folder.

    ``config`` has ``experiments`` (name -> ``{preset, <section overrides>..., seed}``), an
    optional ``defaults`` block applied to every experiment (under its own overrides) and an
    optional ``sweeps`` block (name -> ``{presets, seeds, hidden_sizes, input_sizes,
    overrides}``) that expands to one experiment per combination, named
    ``<sweep>_<preset>_h<hidden>_i<input>_s<seed>``.
    """
    defaults = config.get("defaults") or {}
    out: dict[str, ExperimentConfig] = {}

    def add(name: str, preset: str, overrides: Mapping[str, Any], where: str) -> None:
        if not _NAME.match(name):
            raise ConfigError(
                f"{where}: experiment name {name!r} must start with a letter or digit and "
                "contain only letters, digits, '_', '.', '-'"
            )
        if name in out:
            raise ConfigError(f"{where}: experiment name {name!r} is defined twice")
        out[name] = resolve_experiment(preset, deep_merge(defaults, overrides), where)

    for name, entry in (config.get("experiments") or {}).items():
        where = f"experiments.{name}"
        entry = dict(entry or {})
        preset = entry.pop("preset", "DefaultConfig")
        add(str(name), preset, entry, where)

    for sweep_name, sweep in (config.get("sweeps") or {}).items():
        where = f"sweeps.{sweep_name}"
        sweep = dict(sweep or {})
        _reject_unknown(
            sweep, {"presets", "seeds", "hidden_sizes", "input_sizes", "overrides"}, where
        )
        presets = sweep.get("presets") or ["DefaultConfig"]
        seeds = sweep.get("seeds") or [0]
        hidden = sweep.get("hidden_sizes") or [None]
        inputs = sweep.get("input_sizes") or [None]
        base_overrides = sweep.get("overrides") or {}
        for preset, h, i, s in itertools.product(presets, hidden, inputs, seeds):
            rnn: dict[str, Any] = {}
            if h is not None:
                rnn["hidden_size"] = h
            if i is not None:
                rnn["input_size"] = i
            overrides = deep_merge(base_overrides, {"rnn": rnn, "seed": s})
            hpart = f"_h{h}" if h is not None else ""
            ipart = f"_i{i}" if i is not None else ""
            add(f"{sweep_name}_{preset}{hpart}{ipart}_s{s}", preset, overrides, where)
    if not out:
        raise ConfigError("config: no experiments defined (expected 'experiments' or 'sweeps')")
    return out


_STAGES = ("data", "training", "test", "reverse")


def stage_seed(seed: int, stage: str, index: int = 0) -> int:
    """An independent 63-bit seed for one stage of an experiment (numpy SeedSequence).

    Each stage draws from its own stream, so changing e.g. the test size never changes the
    training data, and each learning rate (``index``) trains on its own noise.
    """
    if stage not in _STAGES:
        raise ValueError(f"stage must be one of {_STAGES} (got {stage!r})")
    seq = np.random.SeedSequence(int(seed), spawn_key=(_STAGES.index(stage), int(index)))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------------------------------------
# Validation internals
# ---------------------------------------------------------------------------------------------


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} (expected some of {sorted(allowed)})")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_range(value: float, meta: Mapping[str, Any], key: str, label: str = "") -> None:
    lo, hi = meta.get(f"{label}min"), meta.get(f"{label}max")
    lo_ex = meta.get("exclusive_min", False) and not label
    hi_ex = meta.get("exclusive_max", False) and not label
    if lo is not None and (value < lo or (lo_ex and value == lo)):
        raise ConfigError(f"{key}: expected a value {'>' if lo_ex else '>='} {lo} (got {value!r})")
    if hi is not None and (value > hi or (hi_ex and value == hi)):
        raise ConfigError(f"{key}: expected a value {'<' if hi_ex else '<='} {hi} (got {value!r})")


def _build_section(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping (got {data!r})")
    _reject_unknown(data, {f.name for f in fields(cls)}, where)
    values = {}
    for f in fields(cls):
        values[f.name] = _check_value(data[f.name], f, f"{where}.{f.name}")
    return cls(**values)


def _check_value(value: Any, f: dataclasses.Field, key: str) -> Any:
    meta = f.metadata
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    optional = "None" in str(f.type)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: a value is required (got null)")
    if "matrix" in meta:
        arr = np.asarray(value, dtype=float) if _all_numbers(value) else None
        if arr is None or arr.ndim != meta["matrix"]:
            kind = "a list of numbers" if meta["matrix"] == 1 else "a list of rows of numbers"
            raise ConfigError(f"{key}: expected {kind} (got {value!r})")
        return arr.tolist()
    if "choices" in meta:
        if value not in meta["choices"] or isinstance(value, bool):
            raise ConfigError(f"{key}: expected one of {list(meta['choices'])} (got {value!r})")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false (got {value!r})")
        return value
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
            raise ConfigError(f"{key}: expected a list of numbers (got {value!r})")
        if "length" in meta and len(value) != meta["length"]:
            raise ConfigError(f"{key}: expected {meta['length']} numbers (got {value!r})")
        if len(value) < meta.get("min_length", 0):
            raise ConfigError(f"{key}: expected at least {meta['min_length']} value(s)")
        for v in value:
            _check_range(v, meta, key, label="item_")
        return [float(v) for v in value]
    is_int = f.type in ("int", "int | None")
    if is_int:
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
            raise ConfigError(f"{key}: expected an integer (got {value!r})")
        value = int(value)
    else:
        if not _is_number(value):
            raise ConfigError(f"{key}: expected a number (got {value!r})")
        value = float(value)
    _check_range(value, meta, key)
    return value


def _all_numbers(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(_all_numbers(v) for v in value)
    return _is_number(value)


def _check_consistency(cfg: ExperimentConfig, where: str) -> None:
    split = cfg.data.split
    if abs(sum(split) - 1.0) > 1e-6:
        raise ConfigError(
            f"{where}.data.split: expected three fractions summing to 1 (got {split})"
        )
    if cfg.reverse.n_components > cfg.rnn.hidden_size:
        raise ConfigError(
            f"{where}.reverse.n_components: expected at most rnn.hidden_size = "
            f"{cfg.rnn.hidden_size} (got {cfg.reverse.n_components})"
        )
    training = cfg.training
    for key, mode in (
        ("select_epochs", "fidelity"),
        ("select_seq", "fidelity"),
        ("average_epochs", "average"),
    ):
        value = getattr(training, key)
        if value is not None and training.keep_weights != mode:
            raise ConfigError(
                f"{where}.training.{key}: only used with keep_weights: {mode} (got {key} = "
                f"{value} with keep_weights: {training.keep_weights})"
            )
    if training.keep_weights in ("fidelity", "average"):
        if training.early_stopping_patience is not None:
            raise ConfigError(
                f"{where}.training.early_stopping_patience: keep_weights: "
                f"{training.keep_weights} works on the last epochs of all epochs, so expected "
                f"null (got {training.early_stopping_patience})"
            )
        key = "select_epochs" if training.keep_weights == "fidelity" else "average_epochs"
        value = getattr(training, key)
        window = KEEP_WEIGHTS_DEFAULTS[key] if value is None else value
        if window > training.epochs:
            raise ConfigError(
                f"{where}.training.{key}: expected at most epochs = {training.epochs} (got "
                f"{window}{' by default' if value is None else ''})"
            )
    # The HMM's own validation names the matrix, its expected shape and the bad values.
    from hmmrnn.hmm import HMM

    try:
        HMM(**dataclasses.asdict(cfg.hmm))
    except ValueError as err:
        raise ConfigError(f"{where}.hmm: {err}") from err
