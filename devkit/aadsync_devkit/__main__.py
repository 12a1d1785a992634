"""``python -m aadsync_devkit``: the ``aadsync-dev`` command without its console script."""

from aadsync_devkit.cli import main

main(prog_name="aadsync-dev")
