"""The ``streamvision`` command and ``python -m streamvision``."""

import sys


def main() -> None:
    """Loads the command line and runs it; Ctrl-C while it loads, before a command handles it, is one
    line and exit 130 instead of a traceback."""
    try:
        from streamvision.cli import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
