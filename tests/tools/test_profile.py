"""tools/profile.py: the classifier table, its JSON form, and the config path through tasks.common.build."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from backbone.cost import main

REPO = Path(__file__).resolve().parents[2]


def test_json_is_one_object_with_totals_types_and_layers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--width", "0.25", "--resolution", "128", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"macs", "params", "by_type", "layers"} <= set(data)
    assert {"conv1x1", "depthwise3x3", "conv3x3", "fc"} <= set(data["by_type"])
    assert all({"macs", "params"} <= set(cost) for cost in data["by_type"].values())
    assert len(data["layers"]) == 28


def test_table_shows_types_and_totals_in_millions(capsys: pytest.CaptureFixture[str]) -> None:
    main([])
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1:4:2] == ["568.74", "4.209"]
    assert all(kind in out for kind in ("conv1x1", "depthwise3x3", "conv3x3", "fc"))


def test_per_layer_table_names_each_layer(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--width", "0.25", "--resolution", "128", "--per-layer"])
    assert "backbone.conv13.pw.conv" in capsys.readouterr().out


def test_shallow_variant_has_no_conv7(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--width", "0.25", "--variant", "shallow", "--num-classes", "10", "--json"])
    names = [layer["name"] for layer in json.loads(capsys.readouterr().out)["layers"]]
    assert "backbone.conv6.pw.conv" in names and not any(name.startswith("backbone.conv7.") for name in names)
    assert names[-1] == "fc"


def test_config_is_profiled_through_profile_target(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def profile_target(config_path: str, overrides: list[str]) -> tuple[nn.Module, object, str]:
        calls.append((config_path, overrides))
        return nn.Sequential(nn.Conv2d(3, 4, 1)).eval(), torch.zeros(1, 3, 8, 8), "fake task"

    fake = types.ModuleType("tasks.common.build")
    fake.profile_target = profile_target
    monkeypatch.setitem(sys.modules, "tasks.common.build", fake)

    assert main(["configs/demo.yaml", "--json", "model.width_mult=0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert calls == [("configs/demo.yaml", ["model.width_mult=0.5"])]
    assert data["description"] == "fake task" and data["macs"] == 4 * 3 * 8 * 8


def test_config_without_the_task_builder_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tasks.common.build", None)  # import fails as if absent
    with pytest.raises(SystemExit) as exit_:
        main(["configs/demo.yml"])
    assert exit_.value.code == 2
    assert "profile_target" in capsys.readouterr().err


def test_a_positional_argument_that_is_not_yaml_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["configs/demo.json"])
    assert "yaml" in capsys.readouterr().err


@pytest.mark.slow
def test_runs_as_a_script_without_shadowing_the_stdlib_profile_module() -> None:
    script = REPO / "tools" / "profile.py"
    done = subprocess.run(
        [sys.executable, str(script), "--width", "0.25", "--resolution", "128", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout)["by_type"]["fc"]["params"] == 256 * 1000
