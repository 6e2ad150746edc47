"""Copy the descriptions `text2lora data describe` wrote into the files that ship with text2lora.

    python scripts/export_descriptions.py [--library DIR]

Writes ``src/text2lora/data/descriptions/<source>.json`` (one file per task source, key-sorted JSON, so the same
caches give the same bytes) from the library's describe caches made with the default ``DescribeConfig``; records
already shipped with those settings are kept, so exporting after a partial run only adds. Commit the result.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from text2lora.data.describe import DescribeConfig, export_descriptions
    from text2lora.data.library import SHIPPED_DIR, TaskLibrary

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", default=None, help="prepared task library (default $TEXT2LORA_HOME/library)")
    args = parser.parse_args(argv)
    counts = export_descriptions(args.library, DescribeConfig())
    total = len(TaskLibrary.load(args.library).tasks)
    for origin, n in counts.items():
        print(f"{SHIPPED_DIR / (origin + '.json')}: {n} tasks")
    print(f"{sum(counts.values())} of {total} library tasks have shipped descriptions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
