"""Local stand-ins for the cloud pieces, so the whole request path runs on one machine."""
