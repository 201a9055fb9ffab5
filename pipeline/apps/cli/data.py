"""``qa-search data fetch``: download (or copy) a public data set and verify its sha256."""

from __future__ import annotations

import argparse


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from pipeline.datasets import fetch_dataset

    path = fetch_dataset(args.name, args.dest, from_file=args.from_file, progress=not args.quiet)
    print(f"{path} (sha256 verified)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.datasets import DATASETS

    data = sub.add_parser("data", help="fetch public data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download (or copy) a data set and verify its sha256")
    fetch.add_argument("name", choices=sorted(DATASETS), help="data set name")
    fetch.add_argument("--from", dest="from_file", metavar="FILE", help="copy from this local file instead of downloading")
    fetch.add_argument("--dest", default="data", help="directory to write into (default: data)")
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=_cmd_data_fetch)
