"""Serve the emulator in the foreground: ``python -m aadsync_devkit.graph_emulator --home DIR [--port N]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from aadsync_devkit.graph_emulator.server import EmulatorServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aadsync_devkit.graph_emulator", description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="directory for the TLS files (and state)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--state-file", type=Path, default=None, help="SQLite state file, loaded at start")
    args = parser.parse_args(argv)
    EmulatorServer(args.home, port=args.port, state_file=args.state_file).serve_forever()


if __name__ == "__main__":
    main()
