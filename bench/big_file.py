"""Peak RSS of `python -m sync mirror` while it mirrors one large file (default 1 GiB), to a folder and to moto S3.

The local upstream (holding the file in memory) runs in this process; the mirror runs as a child process, so its
peak RSS (ru_maxrss of the child) is the mirror's alone. Prints a Markdown table.

    .venv/bin/python -m bench.big_file [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from devstack.redirector import free_port
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer

BLOCK = os.urandom(1 << 20)


def run_child(upstream: str, dest: str, env: dict[str, str]) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit code) of one mirror run in a fresh child process."""
    script = (
        "import resource, subprocess, sys\n"
        "code = subprocess.call(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    command = [sys.executable, "-m", "sync", "mirror", "--upstream", upstream, "--dest", dest, "--log-format", "json"]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script, *command], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.monotonic() - started
    peak_kib = int(result.stdout.strip().splitlines()[-1])
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-2000:])
    return seconds, peak_kib / 1024, result.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    content = BLOCK * args.size_mib
    index = FakeIndex()
    index.add_file("bigproject", "bigproject-1.0.tar.gz", content, version="1.0")
    rows = []
    with UpstreamServer(index) as upstream, tempfile.TemporaryDirectory() as tmp:
        seconds, peak, code = run_child(upstream.url, str(Path(tmp) / "mirror"), dict(os.environ))
        rows.append(("folder", seconds, peak, code))
        moto_port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        moto.start()
        try:
            endpoint = f"http://127.0.0.1:{moto_port}"
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint,
            }
            boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            ).create_bucket(Bucket="big")
            seconds, peak, code = run_child(upstream.url, "s3://big/mirror", env)
            rows.append(("moto S3", seconds, peak, code))
        finally:
            moto.stop()
    print(f"one file of {args.size_mib} MiB; peak RSS of the mirror process (goal < 200 MB)\n")
    print("| destination | seconds | MiB/s | peak RSS (MiB) | exit |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, peak, code in rows:
        print(f"| {name} | {seconds:.1f} | {args.size_mib / seconds:.0f} | {peak:.0f} | {code} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
