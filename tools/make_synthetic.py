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

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.classification.synthetic import make_synthetic_dogs, make_synthetic_imagefolder
from tasks.common.cli import ToolParser, run_tool
from tasks.common.files import claim_generated_dir, generated_settings, mark_generated_dir
from tasks.detection.synthetic import make_shapes_coco
from tasks.face_attributes.synthetic import make_synthetic_celeba
from tasks.face_attributes.unlabeled import make_unlabeled_faces
from tasks.face_embedding.synthetic import make_synthetic_lfw

KINDS = ("coco", "dogs", "imagefolder", "celeba", "lfw", "folder")


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(description=__doc__)
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
    generator, kwargs = _generator(args.kind, args.train, args.val, args.seed)
    # Every argument of the generator, defaults included: --reuse keeps nothing that a changed default would draw
    # differently (the demos' figures were measured on exactly these sets).
    settings = {
        "kind": args.kind,
        "train": args.train,
        "val": args.val,
        "seed": args.seed,
        "generator": _resolved_arguments(generator, kwargs),
    }
    if args.reuse and generated_settings(args.out) == settings:
        print(f"{args.out} already holds the {args.kind} dataset of these settings: kept")
        return 0
    earlier = claim_generated_dir(args.out)
    if earlier is not None:
        print(f"replacing the earlier make_synthetic output in {args.out} ({_differences(earlier, settings)})")
    # Marked before the first file: a run stopped halfway (Ctrl-C in make demo) leaves a folder the next call may
    # replace, and that --reuse never keeps (the mark says unfinished).
    Path(args.out).mkdir(parents=True, exist_ok=True)
    mark_generated_dir(args.out, {**settings, "unfinished": True})
    path = generator(args.out, **kwargs)
    mark_generated_dir(path, settings)
    print(f"wrote {args.kind} dataset to {path}")
    return 0


def _generator(kind: str, train: int | None, val: int | None, seed: int) -> tuple[Callable[..., Path], dict[str, Any]]:
    """The function that writes ``kind`` and its arguments besides the folder (those the command line gives)."""
    sizes = {k: v for k, v in (("num_train", train), ("num_val", val)) if v is not None}
    if kind == "lfw":
        return make_synthetic_lfw, {"seed": seed}
    if kind == "folder":
        return make_unlabeled_faces, {"seed": seed, **({"count": train} if train else {})}
    generators = {
        "coco": make_shapes_coco,
        "dogs": make_synthetic_dogs,
        "imagefolder": make_synthetic_imagefolder,
        "celeba": make_synthetic_celeba,
    }
    return generators[kind], {"seed": seed, **sizes}


def _resolved_arguments(generator: Callable[..., Path], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with every other argument's default filled in, as JSON stores them (tuples become lists)."""
    bound = inspect.signature(generator).bind_partial(**kwargs)
    bound.apply_defaults()
    return json.loads(json.dumps({k: v for k, v in bound.arguments.items() if k != "out"}))


def _differences(earlier: dict[str, Any], settings: dict[str, Any]) -> str:
    """What changed between the settings recorded in a folder and the requested ones, for the replacing message."""
    if earlier.get("kind") != settings["kind"]:
        return f"a {earlier.get('kind')} set"
    if earlier.get("unfinished"):
        return "an unfinished earlier run"
    if "generator" not in earlier:
        return "settings recorded without the generator's defaults"
    recorded = earlier["generator"]
    changed = [f"{k} {recorded.get(k)!r} -> {v!r}" for k, v in settings["generator"].items() if recorded.get(k) != v]
    return ", ".join(changed) or "the same settings"


if __name__ == "__main__":
    sys.exit(run_tool(main))
