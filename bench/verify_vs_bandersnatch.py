"""Benchmark 12: bandersnatch's `verify` beside `python -m sync verify`, on one corpus mirrored by each to a folder.

The fake PyPI (tests/upstream) serves `--projects` projects of `--files` small files (1-4 KB of seeded random bytes,
every other one with its `.metadata`) on 127.0.0.1. bandersnatch mirrors it (JSON metadata on, as its verify needs)
into one folder, pypi-cdn into another; then each audit runs as a child process (wall, CPU and peak RSS from `wait4`,
bench.compare's wrapper), each tool at its default concurrency, counting the requests it made to the fake PyPI.
bandersnatch's verify runs as configured (re-hashing every file against its local web/json) and with
`--json-update` (refetching each project's JSON from upstream first); pypi-cdn's in `rehash` and `sizes` modes (on a
folder, `checksum` re-hashes as `rehash` does). Then one file is corrupted (same size) and one deleted in each
mirror, and each tool's verdict is shown: pypi-cdn's reports, bandersnatch's (`--dry-run`) reports, and bandersnatch's
plain verify repairs by downloading again.
Run: .venv/bin/python -m bench.verify_vs_bandersnatch [--projects 600] [--files 10]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench._bandersnatch import BANDERSNATCH_VERSION, VENV, bandersnatch_command, ensure_bandersnatch
from bench.compare import CREDENTIALS, pypi_cdn_command, run_child
from tests.upstream.index import FakeFile, FakeIndex
from tests.upstream.server import UpstreamServer

BANDERSNATCH_WORKERS = 3  # bandersnatch's default `workers`; its verify also runs its default 3 `verifiers`
PYPI_CDN_MIRROR_WORKERS = 10
# bandersnatch 8.2.0's verify builds its Master without the config's `allow-non-https` (its mirror passes it), so it
# refuses the fake PyPI's http:// URL; this runs `bandersnatch` with that one argument passed, nothing else changed.
BANDERSNATCH_ALLOWING_HTTP = """
import functools, sys
import bandersnatch.master
from bandersnatch.main import main
bandersnatch.master.Master.__init__ = functools.partialmethod(bandersnatch.master.Master.__init__, allow_non_https=True)
sys.exit(main())
"""
BANDERSNATCH_LOG_DECORATION = re.compile(r"^\S+ \S+ [A-Z]+: | \(\w+\.py:\d+\)$")  # "date time INFO: ... (file.py:1)"


@dataclass
class Audit:
    tool: str
    mode: str
    command: list[str]
    objects: int = 0
    exit_code: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    peak_mb: float = 0.0
    upstream: Counter[str] | None = None
    load: float = 0.0
    output: str = ""


def build_index(projects: int, files: int, seed: int) -> tuple[FakeIndex, list[FakeFile]]:
    """`projects` x `files` sdists of 1-4 KB of random bytes, every other one with its core metadata."""
    rng = random.Random(seed)
    index, stored = FakeIndex(), []
    for number in range(projects):
        name = f"verify-bench-{number:05d}"
        for position in range(files):
            version = f"{position}.0"
            metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode() if position % 2 else None
            body = rng.randbytes(rng.randint(1024, 4096))
            filename = f"{name.replace('-', '_')}-{version}.tar.gz"
            stored.append(index.add_file(name, filename, body, version=version, metadata=metadata))
    return index, stored


def upstream_kinds(server: UpstreamServer) -> Counter[str]:
    """The fake PyPI's logged requests by kind: legacy JSON, files (and .metadata), other."""
    kinds = Counter(json=server.count("/pypi/"), files=server.count("/packages/"))
    kinds["other"] = server.count() - kinds["json"] - kinds["files"]
    return kinds


def run_audit(audit: Audit, server: UpstreamServer, work: Path, objects: int) -> Audit:
    """Run `audit.command` as a measured child; its log, exit code and upstream requests fill `audit`."""
    log = work / f"{audit.tool}-{audit.mode}-{time.monotonic_ns()}.log"
    server.reset_log()
    audit.load = os.getloadavg()[0]
    audit.seconds, audit.cpu, audit.peak_mb, audit.exit_code = run_child(audit.command, dict(os.environ), log)
    audit.upstream = upstream_kinds(server)
    audit.output = log.read_text(errors="replace")
    checked = [line for line in audit.output.splitlines() if line.startswith(("sound:", "UNSOUND:"))]
    # pypi-cdn says what it checked; bandersnatch checks every file and .metadata its JSON names, as the corpus has
    audit.objects = int(checked[-1].split(" objects checked")[0].rsplit(" ", 1)[1]) if checked else objects
    return audit


def print_table(audits: list[Audit]) -> None:
    print(
        f"| tool | mode | objects | exit | wall s | CPU s | objects/s | peak RSS MB | upstream requests "
        f"(json/files/other) | load |\n|{'---|' * 10}"
    )
    for a in audits:
        up = a.upstream or Counter()
        print(
            f"| {a.tool} | {a.mode} | {a.objects:,} | {a.exit_code} | {a.seconds:.1f} | {a.cpu:.1f} | "
            f"{a.objects / a.seconds:,.0f} | {a.peak_mb:.0f} | {sum(up.values()):,} "
            f"({up['json']:,}/{up['files']:,}/{up['other']:,}) | {a.load:.1f} |"
        )


def damage(root: Path, corrupted: FakeFile, deleted: FakeFile) -> None:
    """Flip the first byte of one stored file (its size unchanged) and delete another."""
    path = root / corrupted.url_path.lstrip("/")
    body = bytearray(path.read_bytes())
    body[0] ^= 0xFF
    path.write_bytes(bytes(body))
    (root / deleted.url_path.lstrip("/")).unlink()


def intact(root: Path, file: FakeFile) -> str:
    path = root / file.url_path.lstrip("/")
    if not path.exists():
        return "missing"
    return "intact" if hashlib.sha256(path.read_bytes()).hexdigest() == file.sha256 else "corrupt"


def verdict(audit: Audit, names: tuple[str, ...]) -> str:
    """What the audit said about the damaged files, in its own words, shortened."""
    said = []
    for line in audit.output.splitlines():
        text = BANDERSNATCH_LOG_DECORATION.sub("", line)
        named = next((name for name in names if name in text), "?")
        if "would be fetched" in text or text.startswith(("Downloaded ", "No files were downloaded")):
            said.append(text)
        elif audit.tool == "pypi-cdn" and ": " in text and not text.startswith(("{", "sound:", "UNSOUND:")):
            said.append(f"{text.split(':')[0]}: {named}")
    return "; ".join(said) or "(nothing)"


def shown(command: list[str], work: Path) -> str:
    if BANDERSNATCH_ALLOWING_HTTP in command:
        command = ["bandersnatch", *command[3:]]  # through the allow-non-https shim
    return " ".join(".venv/bin/python" if part == sys.executable else part for part in command).replace(
        str(work), "$WORK"
    )


def damage_pass(
    server: UpstreamServer, work: Path, files: list[FakeFile], tools: dict[str, tuple[list[str], Path]]
) -> None:
    """Corrupt one file and delete another in each mirror ({tool: (verify command, files root)}); each verdict."""
    corrupted, deleted = files[0], files[1]
    for _, root in tools.values():
        damage(root, corrupted, deleted)
    our_verify, their_verify = tools["pypi-cdn"][0], tools["bandersnatch"][0]
    checks = [
        Audit("pypi-cdn", "rehash", [*our_verify, "--mode", "rehash"]),
        Audit("pypi-cdn", "sizes", [*our_verify, "--mode", "sizes"]),
        Audit("bandersnatch", "verify --dry-run", [*their_verify, "--dry-run"]),
        Audit("bandersnatch", "verify", their_verify),
    ]
    print(f"\n## damage: {corrupted.filename} corrupted (first byte flipped), {deleted.filename} deleted\n")
    print(f"| tool | mode | exit | upstream requests (json/files/other) | verdict | files afterwards |\n|{'---|' * 6}")
    for check in checks:
        run_audit(check, server, work, 0)
        root = tools[check.tool][1]
        up = check.upstream or Counter()
        said = verdict(check, (corrupted.filename, deleted.filename))
        after = f"{intact(root, corrupted)}, {intact(root, deleted)}"
        print(
            f"| {check.tool} | {check.mode} | {check.exit_code} | {sum(up.values())} "
            f"({up['json']}/{up['files']}/{up['other']}) | {said} | {after} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--projects", type=int, default=600)
    parser.add_argument("--files", type=int, default=10, help="files per project (every other one has .metadata)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ensure_bandersnatch()
    started = time.perf_counter()
    index, files = build_index(args.projects, args.files, args.seed)
    objects = len(files) + sum(1 for f in files if f.metadata is not None)
    print(
        f"corpus: {args.projects} projects, {len(files):,} files + {objects - len(files):,} .metadata "
        f"= {objects:,} objects, {sum(f.size for f in files) / 2**20:.1f} MB "
        f"(built in {time.perf_counter() - started:.0f} s); bandersnatch {BANDERSNATCH_VERSION}",
        flush=True,
    )
    env = {**os.environ, **CREDENTIALS}
    with UpstreamServer(index) as server, tempfile.TemporaryDirectory(prefix="verify-vs-bandersnatch-") as tmp:
        work = Path(tmp)
        theirs, ours = work / "bandersnatch", work / "pypi-cdn"
        mirror = bandersnatch_command(
            work,
            server.url,
            str(theirs),
            endpoint_url=None,
            workers=BANDERSNATCH_WORKERS,
            live=None,
            credentials=CREDENTIALS,
            json=True,
        )
        their_verify = [str(VENV / "bin" / "python"), "-c", BANDERSNATCH_ALLOWING_HTTP, *mirror[1:-1], "verify"]
        for tool, command in (
            ("bandersnatch", mirror),
            ("pypi-cdn", pypi_cdn_command(server.url, str(ours), None, PYPI_CDN_MIRROR_WORKERS, live=False)),
        ):
            seconds, _, _, code = run_child(command, env, work / f"{tool}-mirror.log")
            print(f"{tool} mirror: {seconds:.1f} s, exit {code}", flush=True)
            if code != 0:
                print((work / f"{tool}-mirror.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                return 1
        our_verify = [sys.executable, "-m", "sync", "verify", "--dest", str(ours)]
        audits = [
            Audit("bandersnatch", "verify (local JSON, hash)", their_verify),
            Audit("bandersnatch", "verify --json-update", [*their_verify, "--json-update"]),
            Audit("pypi-cdn", "rehash", [*our_verify, "--mode", "rehash"]),
            Audit("pypi-cdn", "sizes", [*our_verify, "--mode", "sizes"]),
        ]
        for audit in audits:
            run_audit(audit, server, work, objects)
            print(f"  {audit.tool} {audit.mode}: {audit.seconds:.1f} s, exit {audit.exit_code}", flush=True)
            if audit.exit_code != 0:
                print(audit.output[-3000:], file=sys.stderr)
        print(
            f"\n## verify: bandersnatch {BANDERSNATCH_VERSION} (workers {BANDERSNATCH_WORKERS}, verifiers 3) vs "
            f"pypi-cdn (workers 32), folders, {objects:,} objects\n"
        )
        print_table(audits)
        print("\ncommands ($WORK: a temporary directory; `bandersnatch` through the allow-non-https shim):")
        for audit in audits:
            print("  " + shown(audit.command, work))
        config = Path(mirror[2]).read_text().replace(str(work), "$WORK").splitlines()
        print(f"  $WORK/{Path(mirror[2]).name}: " + ", ".join(line for line in config[1:] if line))
        damage_pass(
            server, work, files, {"bandersnatch": (their_verify, theirs / "web"), "pypi-cdn": (our_verify, ours)}
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
