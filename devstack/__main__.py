"""`python -m devstack demo|stack`: run pypi-cdn on this machine."""

import argparse
import sys

from devstack import demo, stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(commands.add_parser("demo", help="mirror a few real projects into a folder and serve it"))
    stack.add_arguments(
        commands.add_parser("stack", help="moto + the Lambda handlers + the edge + nginx: the whole path, locally")
    )
    args = parser.parse_args(argv)
    return {"demo": demo.run, "stack": stack.run}[args.command](args)


sys.exit(main())
