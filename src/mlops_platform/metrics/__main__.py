"""``python -m mlops_platform.metrics``: the resident exporter (see ``exporter.main``)."""

from mlops_platform.metrics.exporter import main

main()
