"""Draw the latent trajectory on the first two principal components (PDF)."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.plot_latent_2d(
    snakemake.input[0],
    snakemake.output[0],
    num_points=snakemake.params.num_points,
    dpi=snakemake.params.dpi,
)
