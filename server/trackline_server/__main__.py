"""``python -m trackline_server``: serve with flags/env settings."""

import argparse
import asyncio

from .app import serve
from .config import add_arguments, from_args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trackline-server")
    add_arguments(parser)
    asyncio.run(serve(from_args(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
