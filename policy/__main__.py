"""What `pulumi preview --policy-pack policy` runs: serves the pack's policies to the Pulumi engine.

The CLI runs this folder as a script from inside it, so the repository root goes on `sys.path` first to make
`policy` importable as the package the tests import.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.pack import PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
