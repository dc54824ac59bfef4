"""Write small synthetic datasets in the exact on-disk formats of the real ones, for the demos and the tests.

python tools/make_synthetic.py coco --out DIR [--train N] [--val M] [--seed S]
python tools/make_synthetic.py dogs --out DIR [--seed S]
python tools/make_synthetic.py imagefolder --out DIR [--seed S]
"""

from __future__ import annotations

import argparse
import sys

from tasks.classification.synthetic import make_synthetic_dogs, make_synthetic_imagefolder
from tasks.detection.synthetic import make_shapes_coco


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["coco", "dogs", "imagefolder"], help="which format to write")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train", type=int, default=None, help="training images (coco) or per class (others)")
    parser.add_argument("--val", type=int, default=None, help="validation images (coco) or per class (others)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = {k: v for k, v in (("num_train", args.train), ("num_val", args.val)) if v is not None}
    if args.kind == "coco":
        path = make_shapes_coco(args.out, seed=args.seed, **sizes)
    elif args.kind == "dogs":
        path = make_synthetic_dogs(args.out, seed=args.seed, **sizes)
    else:
        path = make_synthetic_imagefolder(args.out, seed=args.seed, **sizes)
    print(f"wrote {args.kind} dataset to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
