"""`python -m benchmarks.harness`: the same as `python -m benchmarks`."""

import sys

from benchmarks.harness import main

sys.exit(main())
