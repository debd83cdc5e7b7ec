"""Draw training and validation loss curves of every learning rate."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.plot_loss_curves(
    list(snakemake.input.histories), snakemake.output[0], dpi=snakemake.params.dpi
)
