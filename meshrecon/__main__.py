"""``python -m meshrecon SUBCOMMAND ...``: the same as the ``meshrecon`` command."""

import sys

from meshrecon.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m meshrecon"))
