import zlib

from hmmrnn.config import expand_experiments, stage_seed
from hmmrnn.stages import TEST_FIGURES, experiment_outputs

# Parsing validates every experiment (presets, ranges, HMM matrices) before any job starts.
EXPERIMENTS = expand_experiments(config)
RESULTS = config["results_dir"].rstrip("/")
EXP = f"{RESULTS}/{{experiment}}"


wildcard_constraints:
    experiment="|".join(sorted(EXPERIMENTS)),
    lr=r"[0-9.e+-]+",
    figure="|".join(TEST_FIGURES),


def experiment(wildcards):
    return EXPERIMENTS[wildcards.experiment]


def section(name):
    """A params function returning one config section as a plain dict."""
    return lambda wildcards: experiment(wildcards).to_dict()[name]


def lr_tag(lr):
    return f"{lr:g}"


def learning_rate(wildcards):
    tags = {lr_tag(lr): lr for lr in experiment(wildcards).training.learning_rates}
    return tags[wildcards.lr]


def seed_of(stage):
    return lambda wildcards: stage_seed(experiment(wildcards).seed, stage)


def training_seed(wildcards):
    # Seeded by the learning rate's value, not its position, so adding a rate to the list
    # leaves the other runs (and their cached models) unchanged.
    index = zlib.crc32(wildcards.lr.encode())
    return stage_seed(experiment(wildcards).seed, "training", index)


def seq_len_for(name):
    def params(wildcards):
        cfg = experiment(wildcards)
        return getattr(cfg, name).seq_len or cfg.data.seq_len

    return params


def candidates(kind):
    """The per-learning-rate training outputs of one experiment (kind: model or history)."""
    suffix = {"model": "pth", "history": "history.json"}[kind]

    def inputs(wildcards):
        tags = [lr_tag(lr) for lr in experiment(wildcards).training.learning_rates]
        return [
            f"{RESULTS}/{wildcards.experiment}/models/lr_{t}.{suffix}" for t in tags
        ]

    return inputs


def all_targets():
    targets = [t for name in EXPERIMENTS for t in experiment_outputs(RESULTS, name)]
    return targets + [f"{RESULTS}/batch_results.json", f"{RESULTS}/batch_fidelity.pdf"]


def threads_for(stage, default):
    return config.get("threads", {}).get(stage, default)


def plot_setting(key):
    return config["plots"][key]


def resource(key, default):
    return config.get("resources", {}).get(key, default)
