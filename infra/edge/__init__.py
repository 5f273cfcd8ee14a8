"""The edge as files: the CloudFront viewer-request function and the redirector's nginx/user-data templates."""

from pathlib import Path

EDGE_DIR = Path(__file__).resolve().parent
VIEWER_REQUEST_JS = EDGE_DIR / "viewer_request.js"
