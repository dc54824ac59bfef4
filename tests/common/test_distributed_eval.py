"""Evaluation under DDP counts every sample once: two processes evaluating a checkpoint of each task give the metrics
one process gives, the validation loss too, on validation sets that two processes cannot split evenly.

The two processes are started as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR... in the environment), both
running this file, which evaluates every task in turn: one launch for all tasks.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from tasks.classification.synthetic import make_synthetic_imagefolder
from tasks.common import runner
from tasks.common.build import load_run
from tasks.common.data import EvalShard
from tasks.common.module import TaskModule
from tasks.common.runner import evaluate
from tasks.detection.synthetic import make_shapes_coco
from tasks.face_attributes.synthetic import make_synthetic_celeba
from tasks.face_embedding.synthetic import make_synthetic_lfw
from tasks.registry import load_task_config

TRAINER = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False}
TWO_PROCESSES = ["trainer.devices=2", "trainer.strategy=ddp"]
# The tasks whose modules log a validation loss.
WITH_LOSS = ("classification", "face_attributes")


@pytest.mark.parametrize(("size", "processes"), [(7, 2), (6, 4), (3, 4), (1, 2)])
def test_evaluation_shards_hold_every_sample_once_and_none_is_empty(size: int, processes: int) -> None:
    shards = [list(EvalShard(range(size), processes, rank)) for rank in range(processes)]

    served = [index for shard in shards for index in shard]
    assert sorted(set(served)) == list(range(size))
    assert len(served) == max(size, processes)  # a repeat only where a process would get nothing
    assert all(shards) and max(map(len, shards)) - min(map(len, shards)) <= 1


# ---------------------------------------------------------------------------------------------------------------
# One checkpoint of each task, evaluated by one process here and by two launched processes.


def _calibrated(module: TaskModule) -> TaskModule:
    """An untrained model with BatchNorm statistics of random images, so that its outputs differ from image to
    image (at initialisation MobileNet's activations shrink layer by layer towards zero)."""
    model = module.model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one batch sets the statistics
        norm.train()
    inputs = [module.example_input(model, module.hparams["model"], {"image_size": 32})[0] for _ in range(4)]
    with torch.no_grad():
        model(sum(inputs, []) if isinstance(inputs[0], list) else torch.cat(inputs))
    model.eval()
    return module


def _write_run(folder: Path, name: str, task: str, model: dict[str, Any], data: dict[str, Any]) -> dict[str, str]:
    """A config of ``task`` and a checkpoint of its calibrated untrained model: the evaluation job of one task."""
    config = {
        "task": task,
        "seed": 0,
        "model": {"width_mult": 0.25, **model},
        "data": {"batch_size": 2, "num_workers": 0, **data},
        "optimizer": {"name": "adamw", "lr": 0.001},
        "trainer": TRAINER,
    }
    config_path = folder / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    L.seed_everything(0, verbose=False)
    run_config, task_spec = load_task_config(config_path)
    _, module = load_run(task_spec, run_config)
    _calibrated(module)
    checkpoint = folder / f"{name}.ckpt"
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)},
        checkpoint,
    )
    return {"name": name, "config": str(config_path), "checkpoint": str(checkpoint), "out": str(folder / name)}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """Every task's evaluation job, on validation sets of odd sizes (5 images; LFW's pairs use 9) in batches of 2."""
    folder = tmp_path_factory.mktemp("ddp_eval")
    folders = make_synthetic_imagefolder(folder / "folders", num_train=1, num_val=1, num_classes=5, size_range=(32, 40))
    # Images of one size: Faster-RCNN pads a batch's images to the largest, which changes its proposals near the
    # border, so images of different sizes would score differently in other batches (one process or two alike).
    shapes = make_shapes_coco(
        folder / "shapes", num_train=1, num_val=5, seed=3, image_size_range=(80, 80), object_size_range=(16, 40)
    )
    celeba = make_synthetic_celeba(folder / "celeba", num_train=2, num_val=5, num_test=1, size=(40, 48))
    lfw = make_synthetic_lfw(
        folder / "lfw",
        seed=1,
        num_train_identities=2,
        images_per_train_identity=1,
        num_lfw_people=4,
        lfw_images_per_person=(1, 3),
        num_folds=2,
        pairs_per_fold=2,
        image_size=32,
    )
    detection = {"root": str(shapes), "image_size": 64}
    ssd = {"name": "ssd300_mobilenet_v1", "image_size": 64, "score_threshold": 0.001}
    faster_rcnn = {"name": "fasterrcnn_mobilenet_v1", "min_size": 64, "max_size": 96, "proposals_test": 20}
    runs = {  # name: (task, model, data)
        "classification": ("classification", {"name": "classifier"}, {"root": str(folders), "image_size": 32}),
        "ssd": ("detection", ssd, detection),
        "faster_rcnn": ("detection", faster_rcnn, detection),
        "face_attributes": ("face_attributes", {"name": "classifier"}, {"root": str(celeba), "image_size": 32}),
        "face_embedding": ("face_embedding", {"name": "identity_classifier"}, {"root": str(lfw), "image_size": 32}),
    }
    return [_write_run(folder, name, *run) for name, run in runs.items()]


@contextmanager
def _trainers() -> Iterator[list[L.Trainer]]:
    """The trainers the runner builds inside the block, for what they logged (``val/loss`` is not in metrics.json)."""
    built: list[L.Trainer] = []
    original = runner.build_trainer

    def build(*args: Any, **kwargs: Any) -> L.Trainer:
        built.append(original(*args, **kwargs))
        return built[-1]

    runner.build_trainer = build
    try:
        yield built
    finally:
        runner.build_trainer = original


def evaluate_all(jobs: list[dict[str, str]], overrides: list[str], suffix: str) -> dict[str, dict[str, Any]]:
    """{job name: {"metrics": what tools/eval.py writes, "logged": what the validation logged}} of every job."""
    results = {}
    for job in jobs:
        config, task = load_task_config(job["config"], overrides)
        with _trainers() as built:
            metrics = evaluate(task, config, job["checkpoint"], out=f"{job['out']}-{suffix}")
        logged = {name: float(value) for name, value in built[-1].callback_metrics.items()}
        results[job["name"]] = {"metrics": metrics, "logged": logged}
    return results


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _two_processes(jobs: list[dict[str, str]], folder: Path, timeout: float = 300) -> dict[str, dict[str, Any]]:
    """``evaluate_all`` of ``jobs`` in two processes started as torchrun starts them; the first one's results."""
    (folder / "jobs.json").write_text(json.dumps(jobs))
    port = str(_free_port())
    ranks, logs = [], [folder / f"rank{rank}.log" for rank in range(2)]
    for rank in range(2):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "NODE_RANK": "0",
            "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore",
        }
        command = [sys.executable, __file__, str(folder / "jobs.json"), str(folder / "results.json")]
        with open(logs[rank], "w") as log:
            ranks.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    # Until both end, one fails (the other would wait for it at its next collective) or the time is up.
    while any(p.poll() is None for p in ranks) and all(p.poll() in (None, 0) for p in ranks):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for process in ranks:
        process.kill()
        process.wait()
    for rank, process in enumerate(ranks):
        assert process.returncode == 0, f"rank {rank} failed ({process.returncode}):\n{logs[rank].read_text()[-4000:]}"
    return json.loads((folder / "results.json").read_text())


def _same(one: Any, two: Any) -> bool:
    if isinstance(one, float) and isinstance(two, float):
        return math.isclose(one, two, rel_tol=1e-5, abs_tol=1e-6) or (math.isnan(one) and math.isnan(two))
    return one == two


@pytest.mark.slow
def test_two_processes_evaluate_every_task_as_one_process_does(jobs: list[dict[str, str]], tmp_path: Path) -> None:
    two = _two_processes(jobs, tmp_path)
    one = evaluate_all(jobs, [], "one")

    for name, expected in one.items():
        assert expected["metrics"]["num_images"] in (5, 9), name  # odd: a padding sampler would repeat one
        for kind in ("metrics", "logged"):
            assert set(two[name][kind]) == set(expected[kind]), (name, kind)
            differing = {
                k: (v, two[name][kind][k]) for k, v in expected[kind].items() if not _same(v, two[name][kind][k])
            }
            assert not differing, f"{name}: one process vs two differ in {kind} {differing}"
    assert all("val/loss" in one[name]["logged"] for name in WITH_LOSS)


if __name__ == "__main__":  # one of the two processes, started by _two_processes
    results = evaluate_all(json.loads(Path(sys.argv[1]).read_text()), TWO_PROCESSES, "two")
    if int(os.environ["RANK"]) == 0:
        Path(sys.argv[2]).write_text(json.dumps(results))
