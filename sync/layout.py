"""The mirror's layout: every key, prefix, media type and cache header the sync writes, the edge serves and the
infrastructure grants — defined here only, imported by `sync/`, `infra/`, `policy/` and `devstack/`.

    simple/index.html, simple/index.v1_json          root pages (PEP 503 HTML, PEP 691 JSON)
    simple/<name>/index.html, .../index.v1_json      project pages; <name> is PEP 503-normalised
    packages/<upstream path or sha256 2/2/60>/<file>  distribution files, their `.metadata` and `.provenance`
    status.json                                      the mirror's public status
    .pypi-cdn/                                       private: state, leases, roster markers, shared-key markers
"""

from __future__ import annotations

PAGES_PREFIX = "simple/"
FILES_PREFIX = "packages/"
STATE_PREFIX = ".pypi-cdn/"  # private: the CDN never serves it
PUBLIC_PREFIXES = (PAGES_PREFIX, FILES_PREFIX)  # what CloudFront may read
MIRROR_PREFIXES = (PAGES_PREFIX, FILES_PREFIX, STATE_PREFIX)  # what the sync writes

JSON_PAGE_NAME = "index.v1_json"
HTML_PAGE_NAME = "index.html"
PAGE_NAMES = frozenset({JSON_PAGE_NAME, HTML_PAGE_NAME})
ROOT_JSON_KEY = PAGES_PREFIX + JSON_PAGE_NAME
ROOT_HTML_KEY = PAGES_PREFIX + HTML_PAGE_NAME
STATUS_KEY = "status.json"  # public: rewritten by every planner pass (sync/status.py)

STATE_KEY = STATE_PREFIX + "state.json"
LEASE_KEY = STATE_PREFIX + "lease.json"
INVALIDATION_USAGE_KEY = STATE_PREFIX + "invalidations.json"
PROJECT_LEASE_PREFIX = STATE_PREFIX + "leases/"  # `<prefix><name>.json`: one sync of a project at a time
ROSTER_PREFIX = STATE_PREFIX + "roster/"  # `<prefix><name>.<change>`: a worker's news for the planner
SHARED_PREFIX = STATE_PREFIX + "shared/"  # `<prefix><key>`: more than one page may name the object at `key`

PROVENANCE_SUFFIX = ".provenance"  # `<file>.provenance`: a file's PEP 740 provenance document, beside it

# Media types.
JSON_PAGE = "application/vnd.pypi.simple.v1+json"  # PEP 691
HTML_PAGE_V1 = "application/vnd.pypi.simple.v1+html"  # PEP 691's HTML, which upstreams may answer with
HTML_PAGE = "text/html; charset=utf-8"  # what index.html is served as: browsers and old pip need text/html (PEP 503)
BINARY = "application/octet-stream"  # distribution files and .metadata: never re-encoded by the edge
INTEGRITY = "application/vnd.pypi.integrity.v1+json"  # PEP 740 provenance documents, `<file>.provenance`
CONTENT_TYPES_BY_SUFFIX = {
    HTML_PAGE_NAME: HTML_PAGE,
    JSON_PAGE_NAME: JSON_PAGE,
    ".json": "application/json",
    PROVENANCE_SUFFIX: INTEGRITY,
}

# Cache headers. Pages: 30 s at the edge and in clients, and no stale-while-revalidate, which hands the first reader
# after the TTL the old page (for a rarely-read page, the only reader); stale only when S3 fails (bench/README §10).
FILE_CACHE_CONTROL = "public, max-age=31536000, immutable"
PAGE_CACHE_CONTROL = "public, max-age=30, stale-if-error=86400"
STATUS_CACHE_CONTROL = "public, max-age=10"  # a status read at the edge is at most seconds old
PRIVATE_CACHE_CONTROL = "no-store"  # objects under STATE_PREFIX


def page_keys(normalized: str) -> tuple[str, str]:
    """Object keys of a project's (JSON, HTML) pages."""
    prefix = project_prefix(normalized)
    return prefix + JSON_PAGE_NAME, prefix + HTML_PAGE_NAME


def project_prefix(normalized: str) -> str:
    """`simple/<name>/`: the folder of a project's pages."""
    return f"{PAGES_PREFIX}{normalized}/"


def hashed_file_key(sha256: str, filename: str) -> str:
    """Where a file is stored when upstream's URL path is not PyPI's `/packages/…`: `packages/<sha256 2/2/60>/…`."""
    return f"{FILES_PREFIX}{sha256[:2]}/{sha256[2:4]}/{sha256[4:]}/{filename}"


def project_lease_key(normalized: str) -> str:
    return f"{PROJECT_LEASE_PREFIX}{normalized}.json"


def roster_key(normalized: str, change: str) -> str:
    return f"{ROSTER_PREFIX}{normalized}.{change}"


def shared_marker_key(key: str) -> str:
    return SHARED_PREFIX + key


def edge_path(key: str) -> str:
    """The CDN path an object is served (and cached, and invalidated) under."""
    return "/" + key


def content_type_for(key: str) -> str:
    """The Content-Type an object is served with, chosen from its key."""
    for suffix, content_type in CONTENT_TYPES_BY_SUFFIX.items():
        if key.endswith(suffix):
            return content_type
    return BINARY


def cache_control_for(key: str) -> str:
    """The Cache-Control an object is served with, chosen from its key. A `.provenance` document is cached as a
    page, not as an immutable file: upstream may attest a file again, and the page then names the new document."""
    if key.startswith(STATE_PREFIX):
        return PRIVATE_CACHE_CONTROL
    if key == STATUS_KEY:
        return STATUS_CACHE_CONTROL
    if key.startswith(FILES_PREFIX) and not key.endswith(PROVENANCE_SUFFIX):
        return FILE_CACHE_CONTROL
    return PAGE_CACHE_CONTROL
