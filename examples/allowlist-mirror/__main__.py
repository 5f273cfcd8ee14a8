"""An allowlist mirror without a domain, declared the way another team's program uses pypi-cdn's component.

The team keeps its own project and config; the mirror is one resource with typed args. Without a domain it serves
on CloudFront's own name, with no DNS and no redirectors. tests/test_infra_example.py runs this file under mocks.
"""

import pulumi

from infra.config import ConfigError, PypiMirrorArgs
from infra.stack import PypiMirror

TEAM_PROJECTS = ("requests", "urllib3", "idna", "certifi", "charset-normalizer")

config = pulumi.Config()
try:
    mirror = PypiMirror(
        "team-mirror",
        PypiMirrorArgs(
            projects=TEAM_PROJECTS,
            alarm_email=config.get("alarmEmail") or None,
            sync_contact="platform@example.org",
            sync_schedule="rate(5 minutes)",
            invalidation_mode="ttl",
        ),
    )
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None

pulumi.export("indexUrl", mirror.index_url)
pulumi.export("uvProjectConfig", mirror.uv_project_config)
pulumi.export("statusUrl", mirror.status_url)
pulumi.export("dashboardUrl", mirror.dashboard_url)
