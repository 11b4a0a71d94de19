#!/usr/bin/env python3
"""Train and evaluate a model (ours or any stock RecBole model), or compare several.

The command line of ``recbole_tpad/__main__.py`` (also ``python -m recbole_tpad``), kept beside
the package as RecBole keeps ``run_recbole.py``; ``pip install .`` puts it on the PATH too.
"""

import sys

from recbole_tpad.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
