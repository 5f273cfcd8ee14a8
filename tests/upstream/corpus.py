"""Deterministic corpora for the fake index: realistic names, versions, wheels and sdists, with cheap bytes.

File bodies are a per-file header followed by one seeded 1 MiB random block repeated, so every file has its own
sha256 while a hundred megabytes cost only memory copies and hashing. Wheels are real zips of that size: their
`<dist>-<version>.dist-info/METADATA` is the core metadata the index serves as `.metadata` (PEP 658), and a stored
(uncompressed) payload member pads them to size.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import random
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from tests.upstream.index import FakeIndex

BLOCK_SIZE = 2**20
SMALL_SIZES = (2 * 1024, 400 * 1024)  # most files: log-uniform between a few KB and a few hundred KB
NAME_WORDS = (
    "django",
    "Flask",
    "requests",
    "zope",
    "py",
    "aws",
    "data",
    "Sphinx",
    "pytest",
    "numpy",
    "async",
    "web",
    "json",
    "yaml",
    "crypto",
    "tools",
    "utils",
    "client",
    "core",
    "plugin",
    "lib",
    "http",
    "cli",
    "config",
    "Azure",
    "ml",
)
NAME_SEPARATORS = ("-", "_", ".", "")
PLATFORM_TAGS = (
    "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
    "cp312-cp312-win_amd64",
    "cp312-cp312-macosx_11_0_arm64",
    "cp311-cp311-musllinux_1_1_aarch64",
)
ZIP_TIME = (2024, 1, 2, 3, 4, 6)  # every member's timestamp: the same arguments give the same bytes
REQUIRES_PYTHON = (">=3.8", ">=3.9", ">=3.7, <4", "!=3.0.*,!=3.1.*,>=2.7")
YANK_REASONS: tuple[str | bool, ...] = ("broken build <see #12>", 'wrong "license" & metadata', True)


@dataclass(frozen=True)
class CorpusStats:
    projects: int
    files: int
    total_bytes: int


def build_corpus(
    index: FakeIndex,
    *,
    projects: int,
    files_per_project: int | tuple[int, int],
    seed: int = 0,
    large_files: int = 0,
    large_size: int = 20 * 2**20,
    metadata_ratio: float = 0.5,
    yank_ratio: float = 0.05,
) -> CorpusStats:
    """Add `projects` projects to `index`, each with `files_per_project` files (or a count drawn from that range).

    The same arguments always give the same names, files and bytes. `large_files` of the files, picked at random,
    are `large_size` bytes; the rest are a few KB to a few hundred KB.
    """
    low, high = (files_per_project, files_per_project) if isinstance(files_per_project, int) else files_per_project
    if projects < 0 or low < 0 or high < low:
        raise ValueError(f"need projects >= 0 and 0 <= low <= high files, got {projects} and {files_per_project}")
    if not (0 <= metadata_ratio <= 1 and 0 <= yank_ratio <= 1):
        raise ValueError(f"ratios must be within [0, 1], got metadata {metadata_ratio}, yank {yank_ratio}")
    rng = random.Random(seed)
    block = rng.randbytes(BLOCK_SIZE)
    planned = [
        (name, filename, version)
        for name in _project_names(rng, projects)
        for filename, version in _release_files(rng, name, rng.randint(low, high))
    ]
    large = set(rng.sample(range(len(planned)), min(large_files, len(planned))))
    total_bytes = 0
    for position, (name, filename, version) in enumerate(planned):
        size = large_size if position in large else int(math.exp(rng.uniform(*map(math.log, SMALL_SIZES))))
        requires_python = rng.choice(REQUIRES_PYTHON) if rng.random() < 0.4 else None
        core_metadata = _metadata(name, version, requires_python)
        metadata = core_metadata if rng.random() < metadata_ratio else None
        yanked = rng.choice(YANK_REASONS) if rng.random() < yank_ratio else False
        header = f"{seed}/{name}/{filename}\n".encode()
        if filename.endswith(".whl"):  # a wheel holds its METADATA whether or not upstream serves it apart
            content = sized_wheel(filename, core_metadata, size, functools.partial(_content, block, header))
        else:
            content = _content(block, header, size)
        index.add_file(
            name, filename, content, version=version, requires_python=requires_python, metadata=metadata, yanked=yanked
        )
        total_bytes += len(content)
    return CorpusStats(projects=projects, files=len(planned), total_bytes=total_bytes)


def add_sample_projects(index: FakeIndex) -> None:
    """The tiny default corpus: 3 projects with a few small files, metadata, a yank and requires-python."""
    index.add_file("Foo_Bar", "foo_bar-1.0.tar.gz", b"foo-bar sdist 1.0\n" * 200, version="1.0")
    index.add_file(
        "Foo_Bar",
        "foo_bar-1.0-py3-none-any.whl",
        b"foo-bar wheel 1.0\n" * 300,
        version="1.0",
        requires_python=">=3.8",
        metadata=_metadata("Foo_Bar", "1.0", ">=3.8"),
    )
    index.add_file(
        "Foo_Bar",
        "foo_bar-1.1-py3-none-any.whl",
        b"foo-bar wheel 1.1\n" * 300,
        version="1.1",
        yanked='broken "wheel" <see #1>',
    )
    index.add_file("zope.Hookable", "zope.hookable-5.4.tar.gz", b"zope.hookable sdist\n" * 150, version="5.4")
    index.add_file(
        "zope.Hookable",
        f"zope_hookable-6.0-{PLATFORM_TAGS[0]}.whl",
        b"zope.hookable wheel\n" * 400,
        version="6.0",
        requires_python=">=3.7, <4",
    )
    index.add_file("tiny", "tiny-0.5.tar.gz", b"tiny", version="0.5")
    index.add_file("tiny", "tiny-1.0-py2.py3-none-any.whl", b"tiny wheel", version="1.0")


def provenance_document(filename: str, sha256: str, *, publishers: tuple[str, ...] = ("release.yml",)) -> bytes:
    """A PEP 740 provenance object for one file, shaped as PyPI serves it: one GitHub Trusted Publisher bundle per
    workflow in `publishers`, each with one attestation whose in-toto statement names the file. The certificate and
    signature are placeholders (nothing here is signed)."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": filename, "digest": {"sha256": sha256}}],
        "predicateType": "https://docs.pypi.org/attestations/publish/v1",
        "predicate": None,
    }
    attestation = {
        "version": 1,
        "verification_material": {
            "certificate": base64.b64encode(b"placeholder certificate").decode(),
            "transparency_entries": [{"logIndex": "1", "kindVersion": {"kind": "dsse", "version": "0.0.1"}}],
        },
        "envelope": {
            "statement": base64.b64encode(json.dumps(statement).encode()).decode(),
            "signature": base64.b64encode(b"placeholder signature").decode(),
        },
    }
    bundles = [
        {
            "publisher": {
                "kind": "GitHub",
                "repository": "example/project",
                "workflow": workflow,
                "environment": None,
                "claims": None,
            },
            "attestations": [attestation],
        }
        for workflow in publishers
    ]
    return json.dumps({"version": 1, "attestation_bundles": bundles}).encode()


def _project_names(rng: random.Random, count: int) -> list[str]:
    """`count` distinct-after-normalisation names mixing case, dots, underscores and hyphens."""
    names: list[str] = []
    seen: set[str] = set()
    for position in range(count):
        words = [
            word.capitalize() if rng.random() < 0.3 else word for word in rng.sample(NAME_WORDS, rng.randint(1, 3))
        ]
        name = rng.choice(NAME_SEPARATORS).join(words)
        if canonicalize_name(name) in seen:
            name = f"{name}{rng.choice(NAME_SEPARATORS[:3])}{position}"
        seen.add(canonicalize_name(name))
        names.append(name)
    return names


def _release_files(rng: random.Random, name: str, count: int) -> list[tuple[str, str]]:
    """`count` (filename, version) pairs over rising releases: sdists (old and PEP 625 style), pure and platform
    wheels."""
    stem = canonicalize_name(name).replace("-", "_")
    files: list[tuple[str, str]] = []
    major, minor, patch = rng.randint(0, 3), rng.randint(0, 9), 0
    while len(files) < count:
        version = f"{major}.{minor}.{patch}"
        if rng.random() < 0.1:
            version += rng.choice(("rc1", "b2", ".post1", ".dev0"))
        old_style = rng.random() < 0.3  # before PEP 625: the display name, sometimes a zip
        files.append(
            (f"{name}-{version}.{rng.choice(('tar.gz', 'zip'))}" if old_style else f"{stem}-{version}.tar.gz", version)
        )
        if rng.random() < 0.7:
            files.append((f"{stem}-{version}-py3-none-any.whl", version))
        if rng.random() < 0.25:
            files.extend((f"{stem}-{version}-{tag}.whl", version) for tag in rng.sample(PLATFORM_TAGS, 2))
        major, minor, patch = rng.choice(((major, minor, patch + 1), (major, minor + 1, 0), (major + 1, 0, 0)))
    return files[:count]


def _metadata(name: str, version: str, requires_python: str | None) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    return ("\n".join(lines) + "\n").encode()


def _content(block: bytes, header: bytes, size: int) -> bytes:
    """`size` bytes (at least the header): `header` then `block` repeated, cut to fit."""
    repeats, rest = divmod(max(size - len(header), 0), len(block))
    return b"".join([header, *([block] * repeats), block[:rest]])  # one copy, however large


def sized_wheel(filename: str, metadata: bytes, size: int, payload: Callable[[int], bytes]) -> bytes:
    """A wheel zip named `filename` holding `metadata` as its METADATA, padded to `size` bytes (or the least a wheel
    takes) by a stored member of `payload(length)` bytes: big payloads are copied once, never compressed."""
    dist, version = filename.split("-")[:2]
    empty = _wheel_zip(dist, version, metadata, {f"{dist}/payload.bin": b""})
    return _wheel_zip(dist, version, metadata, {f"{dist}/payload.bin": payload(max(size - len(empty), 0))})


def _wheel_zip(dist: str, version: str, metadata: bytes, members: dict[str, bytes]) -> bytes:
    """A pure-Python wheel of `members` plus its dist-info (METADATA, WHEEL, RECORD), stored uncompressed."""
    info = f"{dist}-{version}.dist-info"
    files = {
        **members,
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # ZIP_STORED: sizes are exact and nothing is compressed
        for path, data in {**files, f"{info}/RECORD": record.encode()}.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=ZIP_TIME), data)
    return buffer.getvalue()


def installable_wheel(name: str, version: str) -> tuple[str, bytes, bytes]:
    """(filename, bytes, core metadata) of a minimal valid pure-Python wheel that pip can download and install."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    wheel = _wheel_zip(dist, version, metadata, {f"{dist}/__init__.py": f"VERSION = {version!r}\n".encode()})
    return f"{dist}-{version}-py3-none-any.whl", wheel, metadata
