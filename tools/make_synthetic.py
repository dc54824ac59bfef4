"""Write small synthetic datasets in the exact on-disk formats of the real ones, for the demos and the tests.

python tools/make_synthetic.py coco --out DIR [--train N] [--val M] [--seed S]       COCO 2017 layout
python tools/make_synthetic.py dogs --out DIR [--seed S]                             Stanford Dogs layout
python tools/make_synthetic.py imagefolder --out DIR [--seed S]                      train/<class>/*.jpg
python tools/make_synthetic.py celeba --out DIR [--train N] [--val M] [--seed S]     CelebA release layout
python tools/make_synthetic.py lfw --out DIR [--seed S]                              train/<Name>/, lfw/, pairs.txt
python tools/make_synthetic.py folder --out DIR [--train N] [--seed S]               unlabelled face images
"""

from __future__ import annotations

import argparse
import sys

from tasks.classification.synthetic import make_synthetic_dogs, make_synthetic_imagefolder
from tasks.detection.synthetic import make_shapes_coco
from tasks.face_attributes.synthetic import make_synthetic_celeba
from tasks.face_attributes.unlabeled import make_unlabeled_faces
from tasks.face_embedding.synthetic import make_synthetic_lfw

KINDS = ("coco", "dogs", "imagefolder", "celeba", "lfw", "folder")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS, help="which format to write")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--train", type=int, default=None, help="training images (coco, celeba, folder) or per class (dogs...)"
    )
    parser.add_argument("--val", type=int, default=None, help="validation images (coco, celeba) or per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = {k: v for k, v in (("num_train", args.train), ("num_val", args.val)) if v is not None}
    if args.kind == "coco":
        path = make_shapes_coco(args.out, seed=args.seed, **sizes)
    elif args.kind == "dogs":
        path = make_synthetic_dogs(args.out, seed=args.seed, **sizes)
    elif args.kind == "imagefolder":
        path = make_synthetic_imagefolder(args.out, seed=args.seed, **sizes)
    elif args.kind == "celeba":
        path = make_synthetic_celeba(args.out, seed=args.seed, **sizes)
    elif args.kind == "lfw":
        path = make_synthetic_lfw(args.out, seed=args.seed)
    else:
        path = make_unlabeled_faces(args.out, seed=args.seed, **({"count": args.train} if args.train else {}))
    print(f"wrote {args.kind} dataset to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
