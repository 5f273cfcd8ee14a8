"""The layout: the media type and Cache-Control each key is served with."""

from __future__ import annotations

from sync.layout import (
    BINARY,
    FILE_CACHE_CONTROL,
    HTML_PAGE,
    INTEGRITY,
    JSON_PAGE,
    PAGE_CACHE_CONTROL,
    PRIVATE_CACHE_CONTROL,
    STATUS_CACHE_CONTROL,
    cache_control_for,
    content_type_for,
)


def test_content_types_follow_the_key():
    assert content_type_for("simple/index.html") == HTML_PAGE == "text/html; charset=utf-8"
    assert content_type_for("simple/foo/index.html") == HTML_PAGE
    assert content_type_for("simple/foo/index.v1_json") == JSON_PAGE == "application/vnd.pypi.simple.v1+json"
    assert content_type_for(".pypi-cdn/state.json") == "application/json"
    for key in (
        "packages/ab/cd/ef/foo-1.0-py3-none-any.whl",
        "packages/ab/cd/ef/foo-1.0.tar.gz",
        "packages/ab/cd/ef/foo-1.0-py3-none-any.whl.metadata",
        "packages/ab/cd/ef/foo-1.0.zip",
    ):
        assert content_type_for(key) == BINARY == "application/octet-stream"
    assert content_type_for("packages/ab/cd/ef/foo-1.0.tar.gz.provenance") == INTEGRITY


def test_cache_headers_follow_the_key():
    assert cache_control_for("packages/ab/cd/ef/foo-1.0.tar.gz") == FILE_CACHE_CONTROL
    assert cache_control_for("packages/ab/cd/ef/foo-1.0-py3-none-any.whl.metadata") == FILE_CACHE_CONTROL
    assert cache_control_for("packages/ab/cd/ef/foo-1.0.tar.gz.provenance") == PAGE_CACHE_CONTROL  # re-attestable
    assert cache_control_for("simple/foo/index.html") == PAGE_CACHE_CONTROL
    assert cache_control_for("simple/index.v1_json") == PAGE_CACHE_CONTROL
    assert cache_control_for("status.json") == STATUS_CACHE_CONTROL
    assert cache_control_for(".pypi-cdn/state.json") == PRIVATE_CACHE_CONTROL == "no-store"
