"""`python -m sync`: mirror an index, audit a mirror. Exit codes are part of the contract (see EXIT_CODES)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from sync.claims import Shard
from sync.config import DEFAULT_UPSTREAM, ConfigError, MirrorConfig, load_config
from sync.lease import LeaseHeld
from sync.progress import LogRoute, Reporter
from sync.reclaim import DEFAULT_LIMIT, MIN_AGE, Reclaim
from sync.run import SyncRun
from sync.storage import StorageError, open_storage
from sync.transport import UpstreamError
from sync.upstream import UpstreamClient
from sync.verify import MAX_WORKERS, Mode, verify_mirror
from sync.verify_progress import CheckpointError, VerifyProgress
from sync.verify_share import WAIT_SECONDS, ShareError

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_UPSTREAM = 3
EXIT_DESTINATION = 4
EXIT_LEASE_HELD = 5
EXIT_VERIFY_FAILED = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_CODES = {
    EXIT_OK: "success: everything planned is mirrored (mirror) or the mirror is sound (verify)",
    EXIT_PARTIAL: "some projects failed (one line each); their previous pages stay published and are retried next run",
    EXIT_USAGE: "bad flag or configuration value",
    EXIT_UPSTREAM: "the upstream index could not be reached or answered nonsense",
    EXIT_DESTINATION: "the destination could not be read or written",
    EXIT_LEASE_HELD: "another run holds the destination's lease",
    EXIT_VERIFY_FAILED: "verify found problems (one line each)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); the mirror stays consistent and the next run resumes",
    EXIT_TERMINATED: "terminated (SIGTERM); as for 130, and the lease is released",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds the run as Ctrl-C does, so that the lease is released on the way out."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread (elsewhere signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _add_destination(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", required=True, help="a folder path or s3://bucket[/prefix]")
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else AWS)",
    )


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="python -m sync", description=__doc__, epilog=epilog, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    mirror = commands.add_parser(
        "mirror",
        help="mirror a PEP 503/691 index into DEST",
        epilog=epilog,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    mirror.add_argument("--upstream", help=f"index base URL (default {DEFAULT_UPSTREAM})")
    _add_destination(mirror)
    mirror.add_argument(
        "--project",
        action="append",
        dest="projects",
        metavar="NAME",
        help="mirror only these projects (repeatable; default: the whole index)",
    )
    mirror.add_argument("--block", action="append", dest="blocklist", metavar="NAME", help="never mirror NAME")
    mirror.add_argument("--keep-latest", type=int, metavar="N", help="keep only the newest N releases per project")
    mirror.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        metavar="PATTERN",
        help="keep only wheels whose platform tag matches (fnmatch, e.g. 'manylinux*', 'any')",
    )
    mirror.add_argument(
        "--python-tag",
        action="append",
        dest="python_tags",
        metavar="PATTERN",
        help="keep only wheels whose Python tag matches (fnmatch, e.g. 'cp313', 'py3')",
    )
    mirror.add_argument("--max-file-size", type=int, metavar="BYTES", help="skip files larger than this")
    mirror.add_argument(
        "--workers", type=int, metavar="N", help="concurrent requests to each upstream host (default 10)"
    )
    mirror.add_argument("--contact", help="contact (e-mail or URL) sent in the User-Agent, as PyPI asks")
    mirror.add_argument(
        "--file-host",
        action="append",
        dest="file_hosts",
        metavar="HOST",
        help="another host that file URLs may point at",
    )
    mirror.add_argument(
        "--public-url",
        metavar="URL",
        help="the mirror's own https base URL (e.g. the CDN's): pages point at provenance documents there "
        "(default: upstream's provenance URLs)",
    )
    mirror.add_argument("--config", type=Path, metavar="FILE", help="TOML file of settings (flags win)")
    mirror.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        default="auto",
        help="auto: a status line on a terminal, JSON lines otherwise",
    )

    verify = commands.add_parser(
        "verify", help="audit a mirror: exit 0 when sound", epilog=epilog, formatter_class=argparse.RawTextHelpFormatter
    )
    _add_destination(verify)
    verify.add_argument(
        "--mode",
        choices=[str(mode) for mode in Mode],
        default=str(Mode.CHECKSUM),
        help="checksum: compare the sha256 S3 recorded at upload (one HEAD per object; objects without one, and a "
        "folder's, are re-hashed); rehash: re-read every byte; sizes: compare listed sizes only (default checksum)",
    )
    verify.add_argument("--sizes-only", action="store_true", help="the same as --mode sizes")
    verify.add_argument(
        "--rehash-sample",
        type=_share,
        default=0.0,
        metavar="SHARE",
        help="in checksum mode, also re-hash this share of the objects, picked at random (e.g. 0.1%% or 0.001)",
    )
    verify.add_argument(
        "--workers",
        type=int,
        default=32,
        metavar="N",
        help=f"requests in flight, 1 to {MAX_WORKERS} (default 32)",
    )
    verify.add_argument(
        "--shard",
        type=Shard.parse,
        default=Shard(),
        metavar="I/N",
        help="check only part I of N of the packages/ keys (0/4 … 3/4); part 0 also checks the pages and the root",
    )
    verify.add_argument(
        "--share-pages",
        type=Path,
        metavar="DIR",
        help="with --shard: a new folder all N shards reach (one disk, EFS, NFS); each shard reads and checks 1/N of "
        "the pages and hands the others their claims through it, so every page is read once in all",
    )
    verify.add_argument(
        "--share-wait",
        type=_duration,
        default=WAIT_SECONDS,
        metavar="AGE",
        help=f"with --share-pages: how long a shard waits for the others' page passes: 6h, 90m, 7200s "
        f"(default {WAIT_SECONDS / 3600:.0f}h)",
    )
    verify.add_argument(
        "--checkpoint",
        type=Path,
        metavar="DIR",
        help="a local folder where the verify keeps its progress; run again with it to resume where it stopped",
    )
    verify.add_argument(
        "--reclaim-orphans",
        action="store_true",
        help="list the orphans older than --min-age (and their shared markers) that --delete deletes (sync/reclaim.py)",
    )
    verify.add_argument(
        "--delete", action="store_true", help="with --reclaim-orphans: delete them (default: a dry run)"
    )
    verify.add_argument(
        "--min-age",
        type=_age,
        default=24 * 3600.0,
        metavar="AGE",
        help=f"reclaim only orphans last written this long before the verify read the pages: 24h, 90m, 7200s "
        f"(default 24h, at least {MIN_AGE / 3600:.0f}h)",
    )
    verify.add_argument(
        "--reclaim-limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"reclaim at most N orphans in one verify (default {DEFAULT_LIMIT})",
    )
    verify.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        default="auto",
        help="auto: a status line on a terminal, JSON lines otherwise",
    )
    return parser


def _share(text: str) -> float:
    """`0.1%` or `0.001` as a share from 0 to 1."""
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share (e.g. 0.1% or 0.001)") from None
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 100%")
    return share


def _duration(text: str) -> float:
    """`24h`, `90m`, `7200s` or `7200` as seconds."""
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0}.get(text[-1:], 1.0)
    try:
        seconds = float(text.rstrip("hms")) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 24h, 90m or 7200s)") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 24h, 90m or 7200s)")
    return seconds


def _age(text: str) -> float:
    """A reclaim's minimum age: a duration of at least MIN_AGE."""
    seconds = _duration(text)
    if seconds < MIN_AGE:
        raise argparse.ArgumentTypeError(f"{text!r} is under the minimum of {MIN_AGE / 3600:.0f}h")
    return seconds


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run_mirror(args: argparse.Namespace) -> int:
    try:
        config = load_config(
            args.config,
            {
                "upstream": args.upstream,
                "dest": args.dest,
                "endpoint_url": args.endpoint_url,
                "projects": args.projects or (),
                "blocklist": args.blocklist or (),
                "keep_latest": args.keep_latest,
                "platforms": args.platforms or (),
                "python_tags": args.python_tags or (),
                "max_file_size": args.max_file_size,
                "workers": args.workers,
                "contact": args.contact,
                "file_hosts": args.file_hosts or (),
                "public_url": args.public_url,
            },
        )
    except ConfigError as error:
        return _fail(EXIT_USAGE, str(error))
    json_lines = {"auto": None, "json": True, "text": False}[args.log_format]
    return mirror_once(config, Reporter(json_lines=json_lines))


def mirror_once(config: MirrorConfig, reporter: Reporter) -> int:
    """One mirror run with the CLI's error handling; returns the exit code."""
    try:
        # The run has two file threads per upstream connection (see ProjectSync), each may hold an S3 connection.
        storage = open_storage(config.dest, endpoint_url=config.endpoint_url, max_connections=2 * config.workers + 4)
    except (StorageError, ValueError) as error:
        return _fail(EXIT_DESTINATION, f"destination {config.dest}: {error}")
    upstream = UpstreamClient(
        config.upstream, contact=config.contact, max_connections=config.workers, file_hosts=config.allowed_file_hosts
    )
    run = SyncRun.local(config, upstream, storage, reporter)
    try:
        with _sigterm_unwinds(), LogRoute(reporter):
            result = run.run(owner=f"{socket.gethostname()}:{os.getpid()}")
    except LeaseHeld as error:
        return _fail(EXIT_LEASE_HELD, str(error))
    except UpstreamError as error:
        return _fail(EXIT_UPSTREAM, f"upstream {config.upstream}: {error}")
    except StorageError as error:
        return _fail(EXIT_DESTINATION, f"destination {config.dest}: {error}")
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        return _fail(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED, "stopped by a signal; run again to resume")
    finally:
        run.close()
    for project in result.failed:
        print(f"failed: {project.name}: {'; '.join(project.errors)}", file=sys.stderr)
    return EXIT_PARTIAL if result.failed else EXIT_OK


FINDING_LINES = {
    "orphan": "orphan: {} (named by no page)",
    "pending": "pending: {} (a run is unfinished or the project awaits its retry; the next run completes it)",
    "problem": "{}",
    "reclaimed": "reclaimed: {}",
    "reclaimable": "reclaimable: {} (run with --delete to delete)",
}


def _verify_usage_error(args: argparse.Namespace) -> str | None:
    if not 1 <= args.workers <= MAX_WORKERS:
        return f"--workers {args.workers}: expected 1 to {MAX_WORKERS}"
    if args.delete and not args.reclaim_orphans:
        return "--delete: only with --reclaim-orphans"
    if args.reclaim_limit < 0:
        return f"--reclaim-limit {args.reclaim_limit}: expected 0 or more"
    if args.share_pages and args.shard.count < 2:
        return "--share-pages: only with --shard I/N, N of 2 or more"
    return None


def run_verify(args: argparse.Namespace) -> int:
    if message := _verify_usage_error(args):
        return _fail(EXIT_USAGE, message)
    reclaim = Reclaim(args.min_age, args.delete, args.reclaim_limit) if args.reclaim_orphans else None
    progress = VerifyProgress(json_lines={"auto": None, "json": True, "text": False}[args.log_format])

    def print_finding(kind: str, line: str) -> None:
        progress.clear()
        print(FINDING_LINES[kind].format(line), flush=True)

    try:
        storage = open_storage(args.dest, endpoint_url=args.endpoint_url, max_connections=args.workers + 4)
        report = verify_mirror(
            storage,
            mode=Mode.SIZES if args.sizes_only else Mode(args.mode),
            rehash_sample=args.rehash_sample,
            workers=args.workers,
            shard=args.shard,
            checkpoint=args.checkpoint,
            on_finding=print_finding,
            progress=progress,
            reclaim=reclaim,
            share=args.share_pages,
            share_wait=args.share_wait,
        )
    except (CheckpointError, ShareError) as error:
        return _fail(EXIT_USAGE, str(error))
    except OSError as error:  # the claims spilled to local disk (ENOSPC, EIO…)
        return _fail(EXIT_DESTINATION, f"local disk of the verify: {error}")
    except (StorageError, ValueError) as error:
        return _fail(EXIT_DESTINATION, f"destination {args.dest}: {error}")
    except KeyboardInterrupt:
        resume = " with the same --checkpoint to resume" if args.checkpoint else ""
        return _fail(EXIT_INTERRUPTED, f"interrupted; run again{resume}")
    counts = report.counts
    print(
        f"{'sound' if report.sound else 'UNSOUND'}: {counts['projects']} projects, {counts['objects']} objects "
        f"checked ({counts['checksums']} by stored checksum, {counts['rehashed']} re-hashed), "
        f"{counts['problem']} problems, {counts['orphan']} orphans"
        + (f", {counts['pending']} pending" if counts["pending"] else "")
        + (
            f", {counts[reclaim.done]} {reclaim.done} ({counts[reclaim.done + '_bytes']} bytes; "
            f"{counts['kept_young']} too young, {counts['kept_limit']} past the limit)"
            if reclaim
            else ""
        )
        + (f" (shard {args.shard})" if args.shard.count > 1 else ""),
        file=sys.stderr,
    )
    return EXIT_OK if report.sound else EXIT_VERIFY_FAILED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"mirror": run_mirror, "verify": run_verify}
    return commands[args.command](args)
