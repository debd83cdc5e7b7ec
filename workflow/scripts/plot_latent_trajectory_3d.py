"""Draw the latent trajectory on the first three principal components (offline HTML)."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.plot_latent_3d(
    snakemake.input[0],
    snakemake.output.html,
    js_path=snakemake.output.js,
    num_points=snakemake.params.num_points,
)
