"""``python -m text2lora.serve [OPTIONS]``: the same as ``text2lora serve``."""

import sys

from text2lora.cli import app, main
from text2lora.cli.serve import register

if __name__ == "__main__":
    register(app)
    sys.exit(main(["serve", *sys.argv[1:]]))
