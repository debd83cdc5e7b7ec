"""Collect one experiment's configuration, training, test and PCA results."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.summarize_experiment(
    name=snakemake.wildcards.experiment,
    config_path=snakemake.input.config,
    training_path=snakemake.input.training,
    test_path=snakemake.input.test,
    pca_path=snakemake.input.pca,
    path=snakemake.output[0],
)
