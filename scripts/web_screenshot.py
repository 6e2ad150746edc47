"""Take docs/serve-web-page.png: the web page on the bundled model, driven by headless chromium (127.0.0.1 only).

    python scripts/web_screenshot.py [--checkpoint CKPT] [--out docs/serve-web-page.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.serve.browser_driver import browser_available, drive, live_server  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "serve-web-page.png")
    ap.add_argument("--description", default="Given an English adjective, answer with its antonym: a single word "
                                              "with the opposite meaning.")
    ap.add_argument("--input", default="hot")
    args = ap.parse_args()
    why = browser_available()
    if why:
        print(why, file=sys.stderr)
        return 2
    from text2lora.serve.app import create_app
    from text2lora.serve.limits import ServeLimits
    from text2lora.serve.runtime import load_runtime

    limits = ServeLimits()
    with live_server(create_app(load_runtime(args.checkpoint, limits), limits)) as url:
        shown = drive(url, args.description, args.input, screenshot=args.out, timeout_ms=180_000)
    print(shown)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
