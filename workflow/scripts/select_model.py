"""Keep the candidate with the lowest validation loss as the experiment's model."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.select_model(
    model_paths=list(snakemake.input.models),
    history_paths=list(snakemake.input.histories),
    model_path=snakemake.output.model,
    results_path=snakemake.output.results,
)
