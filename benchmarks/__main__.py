"""`python -m benchmarks`: the side-by-side harness (see benchmarks/harness/)."""

import sys

from benchmarks.harness import main

sys.exit(main())
