"""``--cache-teacher``: the teacher's outputs computed once per training image, keyed by the image's path (never by
loader position), kept in the run directory and reused in later epochs and on resume."""

from __future__ import annotations

import hashlib
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from tasks.distillation.data import TwoViews, collate_two_views
from tasks.distillation.teacher import Teacher

__all__ = ["CACHE_FILE", "teacher_cache"]

CACHE_FILE = "teacher_cache.safetensors"


def _compute(teacher: Teacher, dataset: TwoViews, batch_size: int) -> dict[str, Tensor]:
    cache: dict[str, Tensor] = {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_two_views)
    for batch in tqdm(loader, desc="teacher cache", unit="batch"):
        outputs = teacher.outputs(batch.teacher_inputs).cpu()
        for index, output in zip(batch.indices.tolist(), outputs, strict=True):
            cache[str(dataset.path(index))] = output.clone()
    return cache


def teacher_cache(
    teacher: Teacher, dataset: TwoViews, run_dir: Path, batch_size: int, write: bool
) -> dict[str, Tensor]:
    """The teacher's output for every training image of ``dataset`` (its items must be un-augmented), read from
    ``run_dir/teacher_cache.safetensors`` when that file was made by the same teacher for the same images, else
    computed (and written when ``write``: the first process)."""
    path = Path(run_dir) / CACHE_FILE
    images = "\n".join(sorted(str(dataset.path(index)) for index in range(len(dataset))))
    stamp = {
        "teacher": teacher.description,
        "image_size": str(teacher.image_size),
        "images": hashlib.sha256(images.encode()).hexdigest(),
    }
    if path.is_file():
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        if metadata == stamp:
            return load_file(str(path))
    # Unreadable images give no output: training skips them too.
    cache = _compute(teacher, dataset, batch_size)
    if write:
        save_file(cache, str(path), metadata=stamp)
    return cache
