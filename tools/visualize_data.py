#!/usr/bin/env python
"""Draw records of a registered dataset as PNGs: ``meshrecon visualize`` in a clone.

The logic is :mod:`meshrecon.cli.visualize_data`; ``--help`` lists the options.
"""

import sys

from meshrecon.cli.visualize_data import main

if __name__ == "__main__":
    sys.exit(main())
