"""Command-line interface (placeholder: grows with the layer-import work)."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__, open as open_image
from .errors import CimError


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="cimfs", description="Build, read and inspect Windows CimFS images.")
    p.add_argument("--version", action="version", version=f"cimfs {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list a directory of an image")
    ls.add_argument("image")
    ls.add_argument("path", nargs="?", default="")
    args = p.parse_args(argv)
    try:
        if args.command == "ls":
            with open_image(args.image) as img:
                for name in img.listdir(args.path):
                    print(name)
        return 0
    except CimError as e:
        print(f"cimfs: {e}", file=sys.stderr)
        return 1
