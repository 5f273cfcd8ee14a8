"""`make demo`: mirror a few real projects from pypi.org into a folder and serve it through the local edge."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from devstack.edge import EdgeError, EdgeServer
from devstack.origins import FolderOrigin
from sync.cli import EXIT_OK, mirror_once
from sync.config import DEFAULT_UPSTREAM, ConfigError, MirrorConfig
from sync.progress import Reporter
from sync.storage import open_storage
from sync.verify import verify_mirror

DEMO_PROJECTS = ("six", "idna", "packaging")
DEMO_PORT = 8701


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", default=DEFAULT_UPSTREAM, help=f"index to mirror (default {DEFAULT_UPSTREAM})")
    parser.add_argument("--dest", type=Path, default=Path("mirror"), help="folder to mirror into (default ./mirror)")
    parser.add_argument(
        "--project",
        action="append",
        dest="projects",
        metavar="NAME",
        help=f"project to mirror (repeatable; default {' '.join(DEMO_PROJECTS)})",
    )
    parser.add_argument("--keep-latest", type=int, default=3, metavar="N", help="releases kept per project (default 3)")
    parser.add_argument("--port", type=int, default=DEMO_PORT, help=f"port on 127.0.0.1 (default {DEMO_PORT})")


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    """Mirror, verify, then serve until Ctrl-C (or until `stop` is set)."""
    try:
        config = MirrorConfig(
            dest=str(args.dest),
            upstream=args.upstream,
            projects=tuple(args.projects or DEMO_PROJECTS),
            keep_latest=args.keep_latest,
            contact="pypi-cdn demo",
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    code = mirror_once(config, Reporter())
    if code != EXIT_OK:
        return code
    report = verify_mirror(open_storage(config.dest))
    if not report.sound:
        print("\n".join(report.problems), file=sys.stderr)
        return 6
    print(f"verify: sound ({report.projects} projects, {report.objects_checked} objects hashed)")
    try:
        edge = EdgeServer(FolderOrigin(args.dest), port=args.port)
    except (EdgeError, OSError) as error:
        print(f"error: cannot serve on 127.0.0.1:{args.port}: {error}", file=sys.stderr)
        return 4
    with edge:
        print(f"index: {edge.url}/simple/")
        print(f"try:   pip install --index-url {edge.url}/simple/ {config.projects[0]}")
        print("serving until Ctrl-C")
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            print()
    return EXIT_OK
