"""pypi-cdn's Pulumi program: validate the configuration first, then declare the stack and export its outputs."""

import pulumi

from infra.config import ConfigError, load_config
from infra.stack import build_stack

try:
    config = load_config()
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None  # Pulumi shows a RunError's message alone, without a traceback

for output_name, value in build_stack(config).items():
    pulumi.export(output_name, value)
