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


rule all:
    default_target: True
    input:
        all_targets(),
