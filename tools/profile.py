"""Mult-adds and parameters of MobileNetV1 (or of a task config's model), per layer type as in the paper.

python tools/profile.py --width 0.75 --resolution 192 [--variant conv|shallow] [--json] [--per-layer]
python tools/profile.py configs/ssd300.yaml [--json] [overrides...]
"""

import sys
from pathlib import Path

# Run as a script, this folder heads sys.path and this file would shadow the standard library's `profile`,
# which cProfile needs (torch._dynamo and Lightning import cProfile).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from backbone.cost import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
