"""What one viewer-request call costs under node, by request shape: real clients' Accept headers and the largest a
viewer can send (CloudFront admits about 20 KB of headers and an 8 KB URL).

Run from the repository root: `.venv/bin/python bench/edge_cost.py [--iterations N]`. Each shape is timed in one node
process running infra/edge/viewer_request.js in a bare vm context, as devstack's runner does; the table gives the
median and the 99th percentile of a call in microseconds (the slowest calls are the machine's, not the function's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.edge import VIEWER_REQUEST_JS  # noqa: E402

PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
HOSTILE_BYTES = 16 * 1024
SHAPES = {
    "pip's Accept": ("/simple/six/", PIP),
    "16 KB Accept of media ranges": ("/simple/six/", ",".join(["text/plain;q=0.5"] * 1000)[:HOSTILE_BYTES]),
    "16 KB Accept of parameters": ("/simple/six/", "text/html" + ";a=b" * (HOSTILE_BYTES // 4)),
    "16 KB Accept of commas": ("/simple/six/", "," * HOSTILE_BYTES),
    "20 KB Accept, JSON last": ("/simple/six/", "x/y," * 5000 + "application/vnd.pypi.simple.v1+json"),
    "8 KB URL": ("/simple/" + "a" * 8000 + "/", PIP),
}

# Times handler(event) `iterations` times per shape (after a warm-up) in a vm context like CloudFront's.
HARNESS = r"""
'use strict';
const fs = require('fs');
const vm = require('vm');
const [script, shapesJson, iterations] = process.argv.slice(1);
const context = vm.createContext({});
vm.runInContext('"use strict";\n' + fs.readFileSync(script, 'utf8'), context);
const out = {};
for (const [label, [uri, accept]] of Object.entries(JSON.parse(shapesJson))) {
    const headers = { accept: { value: accept } };
    const event = () => ({ request: { method: 'GET', uri: uri, querystring: {}, headers: headers } });
    for (let i = 0; i < 50; i++) context.handler(event());
    const times = [];
    for (let i = 0; i < Number(iterations); i++) {
        const e = event();
        const start = process.hrtime.bigint();
        context.handler(e);
        times.push(Number(process.hrtime.bigint() - start) / 1000);
    }
    times.sort((a, b) => a - b);
    out[label] = [times[Math.floor(times.length / 2)], times[Math.floor(times.length * 0.99)]];
}
process.stdout.write(JSON.stringify(out));
"""


def measure(shapes: dict[str, tuple[str, str]], iterations: int = 500) -> dict[str, tuple[float, float]]:
    """(median, 99th percentile) microseconds of one call per shape."""
    result = subprocess.run(
        ["node", "-e", HARNESS, str(VIEWER_REQUEST_JS), json.dumps(shapes), str(iterations)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return {label: (median, p99) for label, (median, p99) in json.loads(result.stdout).items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args(argv)
    figures = measure(SHAPES, args.iterations)
    width = max(map(len, SHAPES))
    print(f"| {'request':<{width}} | median µs | p99 µs |")
    print(f"| {'-' * width} | --------: | -----: |")
    for label, (median, p99) in figures.items():
        print(f"| {label:<{width}} | {median:9.1f} | {p99:6.1f} |")


if __name__ == "__main__":
    main()
