"""Allows ``python -m streamvision``."""

from streamvision.cli import main

main()
