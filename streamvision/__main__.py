"""The ``streamvision`` command and ``python -m streamvision``."""

import signal


def main() -> None:
    """Loads the command line and runs it; Ctrl-C while it loads, before a command handles it, is one
    line and exit 130 instead of a traceback."""
    from streamvision.interrupted import exit_interrupted

    signal.signal(signal.SIGINT, exit_interrupted)
    from streamvision.cli import main as run_cli

    run_cli()


if __name__ == "__main__":
    main()
