"""Mirror a PEP 503/691 package index into a folder or an S3 bucket: verified, ordered, incremental."""
