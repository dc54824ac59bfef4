"""The README's commands, checked against the code so that they cannot drift from it.

What counts as a command (the convention the README keeps):
- every line of a fenced block marked ```bash or ```sh; a line that ends in ``\\`` or ``|`` goes on in the next,
  ``#`` starts a comment, and ``;``, ``&&`` and ``|`` separate commands (``for ...; do`` and ``done`` are skipped);
- in a block marked ```console or unmarked, the lines that start with ``$ ``; the lines after one, up to the next,
  are what it prints (``...`` stands for any text);
- every inline code span (which may wrap over lines) that starts with ``python``, ``make``, ``time``, ``torchrun``,
  ``srun`` or ``source``.
Placeholders are capitals (``CONFIG``, ``DIR``, ``LR``, ``RUN...``) and shell variables (``$s``); optional parts are
in brackets, starting with an option (``[--variant conv|shallow]``: taken, with its first alternative) or
``[dotted.key=value ...]`` (left out).

Every ``python tools/X.py ...`` (also after ``time``, ``srun`` and torchrun's own options) names an existing tool
whose own parser accepts the arguments (parsed, not run), and a ``configs/*.yaml`` it names exists and passes the
config check with the command's overrides; ``make_synthetic.py`` never writes into a folder the Makefile's demos
generate; ``python -c`` code compiles; ``make`` targets exist; ``source`` activates the Makefile's environment.
A few are run as printed: the backbone snippet (its commented results compared), the profiler loop's body in the
activated environment (its output against the README's table) and the config-typo example (its printed error).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import tokenize
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import save_file

from backbone import MobileNetV1
from backbone.contract import TapInfo
from tasks.common.cli import run_tool
from tasks.registry import load_task_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
COMMAND_WORDS = ("python", "make", "time", "torchrun", "srun", "source")
SEPARATORS = {"|", ";", "&&", "||", "&"}
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\.\.\.)?$")
OPTIONAL = re.compile(r"\[(-[^\[\]]*|dotted\.key=value \.\.\.)\]")


@dataclass
class Command:
    """One command of the README: its words, the line it starts on, and the output printed after it (``$ `` lines)."""

    words: list[str]
    line: int
    output: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"README.md:{self.line}: {' '.join(self.words)}"


@dataclass
class Block:
    """A fenced block: its info string (``bash``), the line of its opening fence and its lines."""

    info: str
    line: int
    lines: list[str]


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    current: Block | None = None
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence and current is None:
            current = Block(fence.group(1), number, [])
        elif fence:
            blocks.append(current)
            current = None
        elif current is not None:
            current.lines.append(line)
    return blocks


def _optional_parts(text: str) -> str:
    def take(match: re.Match[str]) -> str:
        inner = match.group(1)
        return "" if inner.startswith("dotted") else re.sub(r"(\S+?)\|\S+", r"\1", inner)

    return OPTIONAL.sub(take, text)


def split_commands(text: str, line: int) -> list[Command]:
    """The simple commands of one shell line (placeholders and optional parts as the docstring says)."""
    lexer = shlex.shlex(_optional_parts(text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[Command] = []
    words: list[str] = []
    for token in [*lexer, ";"]:
        if token in SEPARATORS:
            while words and words[0] in ("do", "then", "else"):
                words.pop(0)
            if words and words[0] not in ("for", "done", "fi", "if", "while"):
                commands.append(Command(words, line))
            words = []
        elif token != "...":
            words.append(token)
    return commands


def readme_commands(text: str) -> list[Command]:
    commands: list[Command] = []
    for block in fenced_blocks(text):
        if block.info in ("bash", "sh"):
            pending, start = "", 0
            for offset, raw in enumerate(block.lines, block.line + 1):
                line = raw.strip()
                if not pending and (not line or line.startswith("#")):
                    continue
                start = start or offset
                if line.endswith("\\"):
                    pending += line[:-1] + " "
                    continue
                if line.endswith("|"):
                    pending += line + " "
                    continue
                commands += split_commands(pending + line, start)
                pending, start = "", 0
        elif block.info in ("console", ""):
            for offset, raw in enumerate(block.lines, block.line + 1):
                if raw.startswith("$ "):
                    commands += split_commands(raw[2:], offset)
                elif commands and commands[-1].line >= block.line:
                    commands[-1].output.append(raw)
    outside = re.sub(r"^\s*```.*?^\s*```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", outside):
        span = " ".join(match.group(1).split())
        if span.split()[0] in COMMAND_WORDS:
            commands += split_commands(span, outside.count("\n", 0, match.start()) + 1)
    return commands


def program(command: Command) -> list[str]:
    """The words from the program on: without ``time`` and ``srun``, and for torchrun, ``python`` and its script."""
    words = list(command.words)
    while words and words[0] in ("time", "srun"):
        words.pop(0)
    if words and words[0] == "torchrun":
        script = next(i for i, word in enumerate(words) if word.endswith(".py"))
        words = ["python", *words[script:]]
    return words


def filled(word: str) -> str:
    """A placeholder or shell variable replaced by a value that every option of ours accepts (``1``)."""
    return "1" if PLACEHOLDER.match(word) else re.sub(r"\$\w+", "1", word)


# ---------------------------------------------------------------------------------------------------------------
# The Makefile


@cache
def makefile() -> tuple[dict[str, str], set[str], dict[str, str]]:
    """(variables, targets, {folder a make_synthetic line writes: that line}), variables expanded."""
    text = (REPO / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*[:?]?=\s*(.*?)\s*$", text, flags=re.M))

    def expand(value: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: expand(variables.get(m.group(1), "")), value)

    targets = set()
    for names in re.findall(r"^([^\s#:=][^:=]*?)\s*:(?!=)", text, flags=re.M):
        targets.update(expand(names).split())
    outputs = {}
    for line in text.splitlines():
        if "tools/make_synthetic.py" in line:
            outputs[expand(line.split("--out", 1)[1].split()[0])] = line.strip()
    return variables, targets, outputs


# ---------------------------------------------------------------------------------------------------------------
# The tools, parsed without running


@cache
def tool(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"readme_tool_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Parsed(Exception):
    """Raised in place of running the tool, once its parser has read the arguments."""


def parse_with_tool(path: Path, args: list[str]) -> argparse.Namespace:
    """The namespace ``tools/X.py`` parses from ``args``, its first parse call intercepted so that nothing runs."""
    originals = {name: getattr(argparse.ArgumentParser, name) for name in ("parse_args", "parse_intermixed_args")}

    def stop_after(name: str):  # type: ignore[no-untyped-def]
        def parse(self: argparse.ArgumentParser, args: list[str] | None = None, namespace: object = None) -> None:
            raise _Parsed(originals[name](self, args, namespace))

        return parse

    errors = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(errors):
        for name in originals:
            patch.setattr(argparse.ArgumentParser, name, stop_after(name))
        patch.setattr(sys, "argv", [str(path), *args])
        try:
            tool(path).main()
        except _Parsed as parsed:
            return parsed.args[0]
        except SystemExit:
            pass
    raise AssertionError(f"{path.name} refuses {args}: {errors.getvalue().strip()}")


COMMANDS = readme_commands(README.read_text())
TOOL_COMMANDS = [c for c in COMMANDS if program(c)[:1] == ["python"] and program(c)[1:2] != ["-m"]]


def test_the_readme_commands_are_found() -> None:
    # The extraction itself: a README rewritten in another convention would otherwise check nothing.
    scripts = {program(c)[1] for c in TOOL_COMMANDS}
    assert {"tools/train.py", "tools/eval.py", "tools/predict.py", "tools/profile.py", "tools/distill.py"} <= scripts
    assert {"tools/make_synthetic.py", "tools/compare_runs.py", "tools/plain_ssd_loop.py", "-c"} <= scripts
    assert any(c.words[0] == "make" for c in COMMANDS) and any(c.output for c in COMMANDS)


@pytest.mark.parametrize("command", TOOL_COMMANDS, ids=str)
def test_each_python_command_names_a_tool_that_accepts_its_arguments(command: Command) -> None:
    words = [filled(word) for word in program(command)]
    if words[1] == "-c":
        compile(words[2], str(command), "exec")
        return
    path = REPO / words[1]
    assert words[1].startswith("tools/") and path.is_file(), f"{command}: no such tool"
    args = parse_with_tool(path, words[2:])

    config = getattr(args, "config", None)
    if config and config.startswith("configs/") and not "".join(command.output).startswith("error:"):
        assert (REPO / config).is_file(), f"{command}: no such config"
        overrides = [word for word in words[2:] if "=" in word and not word.startswith("-")]
        load_task_config(REPO / config, overrides)
    if path.stem == "make_synthetic":
        _, _, demo_folders = makefile()
        assert args.out.rstrip("/") not in demo_folders, f"{command}: writes into a demo's dataset"


def test_make_targets_and_the_environment_are_the_makefiles() -> None:
    variables, targets, _ = makefile()
    for command in COMMANDS:
        if command.words[0] == "make":
            missing = [word for word in command.words[1:] if not word.startswith("-") and word not in targets]
            assert not missing, f"{command}: no such make target"
        if command.words[0] == "source":
            assert command.words[1:] == [f"{variables['VENV']}/bin/activate"], str(command)
    assert any(command.words[0] == "source" for command in COMMANDS), "the README must say how to activate .venv"


def _comment_value(comment: str, namespace: dict[str, object]) -> object:
    """What a ``# comment`` of the snippet says a line gives, or None where it is prose."""
    try:
        return eval(comment, dict(namespace)) if comment else None  # the README's own text, e.g. {"conv11": 384}
    except Exception:
        return None


def _as_written(value: object) -> object:
    """A value as the snippet's comments write it: tensors by their shape."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):
        return {k: _as_written(v) for k, v in value.items()}
    return value


def test_the_backbone_snippet_runs_and_gives_what_its_comments_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snippet = next(
        b for b in fenced_blocks(README.read_text()) if b.info == "python" and "from backbone" in "\n".join(b.lines)
    )
    monkeypatch.chdir(tmp_path)
    # The file the snippet loads, in our own format: how to obtain timm's is the README's weights section.
    for name in re.findall(r"[\w./-]+\.safetensors", "\n".join(snippet.lines)):
        save_file(MobileNetV1(num_classes=1000, activation="relu6").state_dict(), tmp_path / name)

    source = "\n".join(snippet.lines) + "\n"
    comments = {
        token.start[0]: token.string.lstrip("# ")
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    namespace: dict[str, object] = {"TapInfo": TapInfo}
    compared = 0
    for statement in ast.parse(source).body:
        with torch.no_grad():
            exec(compile(ast.Module([statement], []), "README.md", "exec"), namespace)
        said = _comment_value(comments.get(statement.end_lineno, ""), namespace)
        if said is not None:
            target = statement.targets[0] if isinstance(statement, ast.Assign) else statement.value
            assert _as_written(eval(ast.unparse(target), namespace)) == said, ast.unparse(statement)
            compared += 1
    assert compared >= 3


def _table(heading: str) -> dict[str, dict[str, str]]:
    """The markdown table whose header starts with ``heading``: {first cell: {column header: cell}}."""
    text = README.read_text()
    lines = text[text.index(heading) :].split("\n\n")[0].splitlines()
    header, *rows = ([cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[:1] + lines[2:])
    return {row[0]: dict(zip(header, row)) for row in rows}


def test_the_profiler_loop_prints_the_readmes_table_in_the_activated_environment() -> None:
    # The loop's body as printed, run by bash after the README's activation line, for the table's smallest cell.
    block = next(b for b in fenced_blocks(README.read_text()) if b.info == "bash" and b.lines[0].startswith("for w"))
    body = "\n".join(block.lines[1:-1])
    activate = next(c for c in COMMANDS if c.words[0] == "source")
    script = f"{shlex.join(activate.words)}\nw=0.25; r=128\n{body}"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)

    done = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    row = _table("| alpha \\ input |")["0.25"]
    assert done.stdout.split() == ["0.25-128", row["128"], row["params (M)"]]


def test_the_config_typo_example_prints_what_the_readme_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = next(c for c in TOOL_COMMANDS if c.output)
    assert example.words[:2] == ["python", "tools/train.py"]
    # The configs as the command names them, in a folder where a run that should not start would write nothing.
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)

    status = run_tool(tool(REPO / "tools/train.py").main, example.words[2:])

    printed = capsys.readouterr()
    got = (printed.out + printed.err).strip()
    expected = "\n".join(line for line in example.output if line.strip())
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    assert status == 2, got
    assert re.fullmatch(pattern, got, flags=re.S), f"README.md:{example.line} shows\n{expected}\nthe tool prints\n{got}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]


def test_the_readme_names_no_file_the_repository_lacks() -> None:
    # configs/*.yaml and tools/*.py named anywhere in the text, commands or not.
    text = README.read_text()
    names = re.findall(r"(?<![\w/])((?:configs|tools)/[\w{},./-]+\.(?:yaml|py))\b", text)
    named: set[str] = set()
    while names:  # brace lists expanded: configs/x_{a,b}_{1,2}.yaml
        name = names.pop()
        brace = re.search(r"\{([^{}]*)\}", name)
        if brace is None:
            named.add(name)
        else:
            names += [name[: brace.start()] + part + name[brace.end() :] for part in brace.group(1).split(",")]
    assert len(named) > 20
    assert not sorted(name for name in named if not (REPO / name).is_file())
