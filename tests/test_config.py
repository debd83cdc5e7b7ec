"""Configuration: presets, overrides, validation messages, sweeps and seeds."""

import pytest

from hmmrnn.config import (
    PRESETS,
    ConfigError,
    DefaultConfig,
    ExperimentConfig,
    HMMSmall,
    deep_merge,
    expand_experiments,
    resolve_experiment,
    stage_seed,
)


def test_seed_presets_have_the_documented_sizes():
    sizes = {
        name: PRESETS[name]().hmm.states
        for name in ("DefaultConfig", "HMMSmall", "HMMMedium", "HMMLarge", "HMMVeryLarge")
    }
    assert sizes == {
        "DefaultConfig": 3,
        "HMMSmall": 2,
        "HMMMedium": 3,
        "HMMLarge": 4,
        "HMMVeryLarge": 5,
    }
    assert all(PRESETS[n]().hmm.outputs == 3 for n in PRESETS)


def test_paper_presets():
    fully = PRESETS["Fully"]()
    assert (fully.hmm.transition_method, fully.hmm.emission_method) == ("fully", "triangular")
    assert (fully.training.epochs, fully.training.grad_clip, fully.data.seq_len) == (1000, 0.3, 30)
    cyclic = PRESETS["Cyclic"]()
    assert cyclic.hmm.transition_matrix[0] == [0.95, 0.025, 0.0, 0.025]
    assert cyclic.hmm.emission_matrix[3] == [0.0, 0.9, 0.1]
    assert [
        PRESETS[n]().data.seq_len for n in ("HMMSmall", "HMMMedium", "HMMLarge", "HMMVeryLarge")
    ] == [100, 30, 30, 40]
    default = DefaultConfig()
    assert (default.training.batch_size, default.training.epochs) == (4096, 500)
    assert (default.rnn.hidden_size, default.rnn.input_size) == (150, 100)
    assert default.training.betas == [0.9, 0.9] and default.training.blur == 0.2


def test_overrides_merge_and_leave_the_rest():
    cfg = resolve_experiment("HMMSmall", {"training": {"epochs": 7}, "seed": 3})
    assert cfg.training.epochs == 7 and cfg.seed == 3
    assert cfg.training.batch_size == 4096 and cfg.hmm.states == 2
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


def test_a_user_can_extend_default_config():
    from dataclasses import dataclass, field

    from hmmrnn.config import HMMConfig

    @dataclass(frozen=True)
    class Mine(DefaultConfig):
        hmm: HMMConfig = field(default_factory=lambda: HMMConfig(states=6, stay_prob=0.9))

    assert resolve_experiment(Mine).hmm.states == 6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hmm": {"stay_prob": 1.5}}, r"hmm\.stay_prob: expected a value <= 1.0 \(got 1.5\)"),
        ({"hmm": {"colour": 1}}, r"hmm: unknown key\(s\) \['colour'\]"),
        ({"training": {"epochs": "ten"}}, r"training\.epochs: expected an integer \(got 'ten'\)"),
        ({"training": {"epochs": 0}}, r"training\.epochs: expected a value >= 1 \(got 0\)"),
        ({"training": {"init": 1}}, r"training\.init: expected true or false"),
        ({"hmm": {"emission_method": "cubic"}}, r"emission_method: expected one of"),
        ({"data": {"split": [0.5, 0.5, 0.5]}}, r"data\.split: expected three fractions summing"),
        ({"training": {"learning_rates": []}}, r"learning_rates: expected at least 1"),
        ({"reverse": {"n_components": 500}}, r"n_components: expected at most rnn.hidden_size"),
        ({"seed": -1}, r"seed: expected a non-negative integer"),
        (
            {"training": {"select_seq": 100}},
            r"training\.select_seq: only used with keep_weights: fidelity "
            r"\(got select_seq = 100 with keep_weights: best\)",
        ),
        (
            {"training": {"average_epochs": 5, "keep_weights": "last"}},
            r"training\.average_epochs: only used with keep_weights: average "
            r"\(got average_epochs = 5 with keep_weights: last\)",
        ),
        (
            {"training": {"keep_weights": "average", "epochs": 8}},
            r"training\.average_epochs: expected at most epochs = 8 \(got 10 by default\)",
        ),
        (
            {"training": {"keep_weights": "fidelity", "select_epochs": 9, "epochs": 8}},
            r"training\.select_epochs: expected at most epochs = 8 \(got 9\)",
        ),
        (
            {"training": {"keep_weights": "average", "early_stopping_patience": 3}},
            r"early_stopping_patience: keep_weights: average works on the last epochs of all "
            r"epochs, so expected null \(got 3\)",
        ),
        ({"optimiser": {}}, r"unknown key\(s\) \['optimiser'\]"),
    ],
)
def test_bad_values_name_the_key_and_the_expectation(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_experiment("DefaultConfig", overrides, where="experiments.x")


def test_invalid_matrix_is_reported_with_the_experiment_key():
    bad = {"hmm": {"states": 2, "transition_matrix": [[0.5, 0.4], [0.5, 0.5]]}}
    with pytest.raises(ConfigError, match=r"experiments\.x\.hmm: .*transition"):
        resolve_experiment("DefaultConfig", bad, where="experiments.x")


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown preset 'Huge'"):
        resolve_experiment("Huge")


def test_deep_merge_does_not_modify_inputs():
    base = {"a": {"b": 1, "c": [1]}}
    out = deep_merge(base, {"a": {"b": 2}})
    assert out == {"a": {"b": 2, "c": [1]}} and base == {"a": {"b": 1, "c": [1]}}


def test_expand_experiments_applies_defaults_then_own_overrides():
    exps = expand_experiments(
        {
            "defaults": {"training": {"epochs": 5, "batch_size": 10}},
            "experiments": {"a": {"preset": "HMMSmall", "training": {"epochs": 9}}},
        }
    )
    assert exps["a"].training.epochs == 9 and exps["a"].training.batch_size == 10


def test_paper_grid_sweep_expands_to_144_models():
    exps = expand_experiments(
        {
            "sweeps": {
                "grid": {
                    "presets": ["HMMSmall", "HMMMedium", "HMMLarge", "HMMVeryLarge"],
                    "hidden_sizes": [50, 150, 200],
                    "input_sizes": [1, 10, 100, 200],
                    "seeds": [0, 1, 2],
                }
            }
        }
    )
    assert len(exps) == 144
    one = exps["grid_HMMLarge_h200_i10_s2"]
    assert (one.hmm.states, one.rnn.hidden_size, one.rnn.input_size, one.seed) == (4, 200, 10, 2)


def test_expand_rejects_duplicates_bad_names_and_empty():
    with pytest.raises(ConfigError, match="no experiments"):
        expand_experiments({})
    with pytest.raises(ConfigError, match="must start with a letter"):
        expand_experiments({"experiments": {"a/b": {}}})
    with pytest.raises(ConfigError, match=r"sweeps\.s: unknown key"):
        expand_experiments({"sweeps": {"s": {"hidden": [1]}}})


def test_stage_seeds_are_deterministic_and_distinct():
    assert stage_seed(0, "data") == stage_seed(0, "data")
    seeds = {
        stage_seed(s, st, i)
        for s in (0, 1)
        for st in ("data", "training", "test", "reverse")
        for i in (0, 1)
    }
    assert len(seeds) == 16
    with pytest.raises(ValueError, match="stage must be one of"):
        stage_seed(0, "plots")


def test_hmm_small_class_is_a_default_config():
    assert isinstance(HMMSmall(), DefaultConfig)
