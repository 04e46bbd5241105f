"""``python -m netzip_mlflow ...``: the ``netzip`` command line."""

import sys

from netzip_mlflow.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
