"""`python -m openslots.cli`: the same app as the `openslots` console script."""

from openslots.cli import main

main()
