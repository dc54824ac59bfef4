"""The peer the SSD demo is measured against: torchvision's stock SSD in a plain hand-written training loop.

python tools/plain_ssd_loop.py --root data/shapes [--epochs 5] [--batch-size 8] [--lr 0.05] [--seed 0] [--out FILE]

torchvision's SSD meta-architecture with its own pieces (DefaultBoxGenerator, 3x3 SSDHead, plain hard negative
mining) on an alpha-0.25 MobileNetV1 with the four SSD extra layers, 300x300 inputs, horizontal flips only, SGD with
momentum and a cosine schedule: what a user writes by hand before reaching for a toolkit. It shares nothing with
the toolkit's training code (no config, no Lightning, no albumentations), only the backbone and the COCO evaluation,
and prints the same COCO table as tools/eval.py.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from pycocotools.coco import COCO
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDHead
from torchvision.transforms.functional import pil_to_tensor
from tqdm import tqdm

from backbone import backbone_normalization, build_backbone
from tasks.common.cli import ToolParser, run_tool
from tasks.common.files import check_data_root
from tasks.detection.evaluation import coco_metrics, to_coco_results
from tasks.detection.ssd import SSDFeatureExtractor


def load_split(root: Path, split: str) -> tuple[COCO, list[int], dict[int, int]]:
    coco = COCO(str(root / "annotations" / f"instances_{split}2017.json"))
    cat_to_label = {cat_id: label for label, cat_id in enumerate(sorted(coco.cats), start=1)}
    return coco, sorted(coco.imgs), cat_to_label


def load_sample(root: Path, split: str, coco: COCO, image_id: int, cat_to_label: dict[int, int], flip: bool):
    info = coco.imgs[image_id]
    image = pil_to_tensor(Image.open(root / f"{split}2017" / info["file_name"]).convert("RGB")).float() / 255
    anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
    boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    labels = torch.tensor([cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64)
    if flip:
        image = image.flip(-1)
        boxes[:, [0, 2]] = info["width"] - boxes[:, [2, 0]]
    return image, {"boxes": boxes, "labels": labels}


def build_model(num_classes: int, width_mult: float) -> SSD:
    body = build_backbone("mobilenet_v1", strides=(16, 32), width_mult=width_mult, activation="relu6")
    features = SSDFeatureExtractor(body, (512, 256, 256, 128), depth_mult=width_mult)
    anchors = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]])
    head = SSDHead(features.out_channels, anchors.num_anchors_per_location(), num_classes + 1)
    mean, std = backbone_normalization("mobilenet_v1")
    return SSD(features, anchors, (300, 300), num_classes + 1, head=head, image_mean=list(mean), image_std=list(std))


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(description=__doc__)
    parser.add_argument("--root", default="data/shapes", help="COCO 2017 layout: annotations/, train2017/, val2017/")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the metrics (COCO keys, train_seconds, arguments) to this JSON file")
    args = parser.parse_args(argv)
    if not (args.epochs >= 1 and args.batch_size >= 1 and args.lr > 0 and args.width > 0):
        parser.error("--epochs and --batch-size must be at least 1, --lr and --width positive")
    root = check_data_root(args.root, "the COCO 2017 layout: annotations/, train2017/, val2017/", "--root")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    train_coco, train_ids, cat_to_label = load_split(root, "train")
    val_coco, val_ids, _ = load_split(root, "val")
    label_to_cat = {label: cat_id for cat_id, label in cat_to_label.items()}
    model = build_model(len(cat_to_label), args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=4e-5)
    steps_per_epoch = len(train_ids) // args.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.05, anneal_strategy="cos"
    )
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = random.sample(train_ids, len(train_ids))
        progress = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}")
        for step in progress:
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            samples = [load_sample(root, "train", train_coco, i, cat_to_label, random.random() < 0.5) for i in batch]
            losses = model([s[0] for s in samples], [s[1] for s in samples])
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            scheduler.step()
            progress.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds = time.perf_counter() - start
    model.eval()
    results = {}
    with torch.no_grad():
        for image_id in tqdm(val_ids, desc="evaluating"):
            image, _ = load_sample(root, "val", val_coco, image_id, cat_to_label, flip=False)
            (detections,) = model([image])
            results[image_id] = to_coco_results(image_id, detections, label_to_cat)
    metrics, table = coco_metrics(val_coco, results)
    print(table)
    summary = json.dumps({"train_seconds": round(train_seconds), **metrics, "args": vars(args)}, indent=2)
    print(summary)
    if args.out:
        Path(args.out).write_text(summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
