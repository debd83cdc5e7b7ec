"""Train one RNN candidate (one learning rate) on an experiment's HMM data."""

import torch

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
stages.train_candidate(
    data_path=snakemake.input.data,
    rnn=snakemake.params.rnn,
    training=snakemake.params.training,
    learning_rate=snakemake.params.learning_rate,
    seed=snakemake.params.seed,
    model_path=snakemake.output.model,
    history_path=snakemake.output.history,
    checkpoint_dir=snakemake.params.checkpoint_dir,
    device=snakemake.params.device,
)
