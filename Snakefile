from snakemake.utils import min_version, validate

min_version("9.0")


# --configfile replaces the default configuration instead of extending it, so that e.g.
# config/paper.yaml does not inherit the laptop-sized defaults.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/test.smk"
include: "workflow/rules/reverse.smk"
include: "workflow/rules/summary.smk"


# Cheap steps run where snakemake runs, not as cluster jobs.
localrules:
    all,
    experiment_config,
    select_model,
    plot_loss_curves,
    plot_test_figure,
    plot_latent_trajectory_2d,
    plot_latent_trajectory_3d,
    summarize_experiment,
    batch_results,
    plot_batch_fidelity,


rule all:
    default_target: True
    input:
        all_targets(),
