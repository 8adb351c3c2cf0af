"""``python -m trackline_server``: serve with flags/env settings."""

import argparse

from .app import run
from .config import add_arguments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trackline-server")
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
