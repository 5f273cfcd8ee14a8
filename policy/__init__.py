"""Policy pack for `pulumi preview --policy-pack policy`: the stack's security rules."""
