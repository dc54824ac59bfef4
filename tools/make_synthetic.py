"""Write small synthetic datasets in the exact on-disk formats of the real ones, for the demos and the tests.

python tools/make_synthetic.py coco --out DIR [--train N] [--val M] [--seed S]       COCO 2017 layout
python tools/make_synthetic.py dogs --out DIR [--seed S]                             Stanford Dogs layout
python tools/make_synthetic.py imagefolder --out DIR [--seed S]                      train/<class>/*.jpg
python tools/make_synthetic.py celeba --out DIR [--train N] [--val M] [--seed S]     CelebA release layout
python tools/make_synthetic.py lfw --out DIR [--seed S]                              train/<Name>/, lfw/, pairs.txt
python tools/make_synthetic.py folder --out DIR [--train N] [--seed S]               unlabelled face images

A folder that holds files is refused unless this tool wrote it (its .written-by-make_synthetic.json), which is then
replaced whole; --reuse keeps an earlier output of exactly the same settings.
"""

from __future__ import annotations

import argparse
import sys

from tasks.classification.synthetic import make_synthetic_dogs, make_synthetic_imagefolder
from tasks.common.cli import run_tool
from tasks.common.files import claim_generated_dir, generated_settings, mark_generated_dir
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
    parser.add_argument(
        "--reuse", action="store_true", help="keep an earlier output of these exact settings instead of rewriting it"
    )
    args = parser.parse_args(argv)
    for flag, value in (("--train", args.train), ("--val", args.val)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
    settings = {"kind": args.kind, "train": args.train, "val": args.val, "seed": args.seed}
    if args.reuse and generated_settings(args.out) == settings:
        print(f"{args.out} already holds the {args.kind} dataset of these settings: kept")
        return 0
    earlier = claim_generated_dir(args.out)
    if earlier is not None:
        print(f"replacing the earlier make_synthetic output in {args.out} ({earlier})")
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
    mark_generated_dir(path, settings)
    print(f"wrote {args.kind} dataset to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
