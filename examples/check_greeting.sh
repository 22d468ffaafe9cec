#!/bin/sh
# The example loop's test suite: passes when greeting.txt says exactly 'Hello, loop!'.
# Plain sh, so the example's gate needs no python on PATH (examples/loop.yaml runs it with `sh`).
found=$(cat greeting.txt 2>/dev/null)
if [ "$found" != "Hello, loop!" ]; then
    echo "expected 'Hello, loop!' in greeting.txt, found '$found'"
    exit 1
fi
echo "greeting ok"
