"""pypi-cdn's Pulumi program: validate the configuration first, then declare the mirror and export its outputs."""

import pulumi

from infra.config import ConfigError, load_config
from infra.stack import PypiMirror

try:
    args = load_config()
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None  # Pulumi shows a RunError's message alone, without a traceback

for output_name, value in PypiMirror("mirror", args).stack_outputs().items():
    pulumi.export(output_name, value)
