#!/usr/bin/env python
"""Run a trained model on an image: ``meshrecon demo`` in a clone.

The logic is :mod:`meshrecon.cli.demo`; ``--help`` lists the options and the files written.
"""

import sys

from meshrecon.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
