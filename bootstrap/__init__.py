"""Bootstrap stack: GitHub OIDC provider, preview and deploy roles, Pulumi state bucket and secrets key."""
