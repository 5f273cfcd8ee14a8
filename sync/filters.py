"""Filters applied to a project page before anything is fetched, so a filtered file never appears in a page."""

from __future__ import annotations

import dataclasses
from fnmatch import fnmatchcase

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from sync.config import MirrorConfig
from sync.models import DistFile, ProjectPage


def wants_project(config: MirrorConfig, normalized: str) -> bool:
    """Whether a project is mirrored at all: on the allowlist (when there is one) and not blocked."""
    if normalized in config.blocklist:
        return False
    return not config.projects or normalized in config.projects


def file_version(filename: str) -> Version | None:
    """The release a file belongs to, read from its name; None when the name follows neither wheel nor sdist rules."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def _wheel_tags_wanted(config: MirrorConfig, filename: str) -> bool:
    if not filename.endswith(".whl") or not (config.platforms or config.python_tags):
        return True
    try:
        tags = parse_wheel_filename(filename)[3]
    except (InvalidWheelFilename, InvalidVersion):
        return False
    platforms_ok = not config.platforms or any(
        fnmatchcase(tag.platform, pattern) for tag in tags for pattern in config.platforms
    )
    pythons_ok = not config.python_tags or any(
        fnmatchcase(tag.interpreter, pattern) for tag in tags for pattern in config.python_tags
    )
    return platforms_ok and pythons_ok


def _file_wanted(config: MirrorConfig, dist: DistFile) -> bool:
    if config.max_file_size is not None and dist.size is not None and dist.size > config.max_file_size:
        return False
    return _wheel_tags_wanted(config, dist.filename)


def filter_page(config: MirrorConfig, page: ProjectPage) -> ProjectPage:
    """The page as the mirror publishes it: only wanted files, of the newest `keep_latest` releases."""
    files = [f for f in page.files if _file_wanted(config, f)]
    versions = page.versions
    if config.keep_latest is not None:
        releases = sorted({v for f in files if (v := file_version(f.filename)) is not None}, reverse=True)
        kept = set(releases[: config.keep_latest])
        files = [f for f in files if file_version(f.filename) in kept]
        versions = tuple(v for v in versions if _parsed_version(v) in kept)
    return dataclasses.replace(page, files=tuple(files), versions=versions)


def _parsed_version(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None
