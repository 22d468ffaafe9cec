"""The example loop's test suite: passes when greeting.txt says exactly 'Hello, loop!'."""

import sys
from pathlib import Path

text = Path("greeting.txt").read_text(encoding="utf-8").strip() if Path("greeting.txt").exists() else ""
if text != "Hello, loop!":
    print(f"expected 'Hello, loop!' in greeting.txt, found {text!r}")
    sys.exit(1)
print("greeting ok")
