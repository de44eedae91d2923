"""Entry point: `python main.py [--config PATH] [run|console|check]`."""

import sys

from bot.cli import main

if __name__ == "__main__":
    sys.exit(main())
