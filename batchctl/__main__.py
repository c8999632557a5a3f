"""``python -m batchctl``: the same as the ``batchctl`` command."""

from batchctl.cli import main

main()
