"""A tiny stand-in agent for `loopengt run --agent`: reads a task as JSON on stdin, prints its output.

It does what the example loop asks: write `greeting.txt` so that the loop's command gate passes.
The first attempt deliberately leaves a typo, so you can watch the gate fail and feed back.
"""

import json
import sys
from pathlib import Path

task = json.load(sys.stdin)
text = "Hello, loop!\n" if task["attempt"] > 1 else "Helo, loop!\n"
Path("greeting.txt").write_text(text, encoding="utf-8")
json.dump({"summary": f"wrote greeting.txt on attempt {task['attempt']}", "file": "greeting.txt"}, sys.stdout)
