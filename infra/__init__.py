"""The pypi-cdn Pulumi components: origin, CDN, DNS, redirectors and the sync function."""
