#!/usr/bin/env python
"""Train and evaluate every method on the synthetic benchmark: ``meshrecon benchmark`` in a clone.

    python tools/benchmark_methods.py --preset quickstart

The logic is :mod:`meshrecon.cli.benchmark_methods`; ``--help`` lists the options.
"""

import sys

from meshrecon.cli.benchmark_methods import main

if __name__ == "__main__":
    sys.exit(main())
