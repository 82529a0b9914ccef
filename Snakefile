# inferbench: how fast, how hungry and how accurate a vision model is in each deployment format.
# The table of contents of the workflow; the logic lives in the `inferbench` package (workflow/inferbench).

from snakemake.utils import min_version

min_version("8.20")


import os

# The reference sweep, unless the command line names a config file: that one then replaces it
# (Snakemake would otherwise merge the two, mixing backends and grids).
if not workflow.config_settings.configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/work.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/harness_check.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
