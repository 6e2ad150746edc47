"""Rebuild the short runs' frozen library (docs/quality/v2-recipe/PLAN.md, third amendment).

The short runs train on a copy of library v2 taken while the description job was still running: the final library's
tasks and instances with the descriptions that had shipped by then (commit 690205e, 338 tasks). This rebuilds that
copy from a prepared library and that commit's description files, without touching either:

    mkdir -p /tmp/snap && for o in bigbench natural_instructions_v1 openai_evals; do
      git show 690205e:src/text2lora/data/descriptions/$o.json > /tmp/snap/$o.json; done
    python scripts/rebuild_shortrun_library.py $TEXT2LORA_HOME/library $TEXT2LORA_HOME/library-shortruns /tmp/snap

It prints how many tasks have generated descriptions (the copy had 332) and the library's fingerprints (without
descriptions: 5d547c194d97d54f). Every task is reset to its own description first, and the library's describe cache
is left out of the copy, so only the snapshot's descriptions apply.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import text2lora.data.library as library


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path, help="a prepared library v2 (text2lora data prepare)")
    parser.add_argument("out", type=Path, help="where the copy goes (replaced if it exists)")
    parser.add_argument("snapshot", type=Path, help="a folder with the snapshot's <source>.json description files")
    args = parser.parse_args(argv)
    if not (args.library / library.INDEX).is_file():
        print(f"error: no library index in {args.library}", file=sys.stderr)
        return 2
    if not any(args.snapshot.glob("*.json")):
        print(f"error: no description files in {args.snapshot}", file=sys.stderr)
        return 2
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.library, args.out, symlinks=True, ignore=shutil.ignore_patterns("descriptions"))
    index = library.read_json(args.out / library.INDEX, "task library index")
    for task in index["tasks"]:
        task["descriptions"] = task.get("descriptions", [])[:1]
        task.pop("heldout_descriptions", None)
    library.write_json(args.out / library.INDEX, index)
    described = library.refresh_descriptions(args.out, shipped_dir=args.snapshot)
    print("tasks with generated descriptions:", described)
    print("fingerprint:", library.library_fingerprint(args.out),
          "without descriptions:", library.library_fingerprint(args.out, with_descriptions=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
