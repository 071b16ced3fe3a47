"""The docs' shell examples, run as written against a real server: do they answer as documented?

Every ```bash block of README.md and docs/api.md is collected by ``tests/support/doc_examples.py``
(its docstring has the convention: which blocks run, where a command's documented answer is,
what ``...`` means, the tolerance on numbers). A block of ``curl`` commands runs from the
repository root against a server on the committed models and on the models the docs tell how
to make (``examples/half_plus_two.py``, run here as the docs run it), ``localhost:8000``
swapped for its address. Other blocks (``make``, ``docker``, ``kubectl``, Python) are not
collected: they set up what the curl blocks talk to. When a model's new version changes a
documented figure, updating the figure in the doc is all there is to do.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.doc_examples import (
    ELLIPSIS,
    Command,
    Example,
    answer_in_comments,
    examples,
    mismatches,
    parse_answer,
    shows_errors,
    split_commands,
)
from tests.support.server import ROOT, start_server, stop_server

DOCS = [ROOT / "README.md", ROOT / "docs" / "api.md"]
# Models the docs tell users to make, by the example script that makes them: served too.
MADE_BY_THE_DOCS = {"half_plus_two.py": "half_plus_two"}
EXAMPLES = [example for doc in DOCS for example in examples(doc)]
RUNNABLE = [example for example in EXAMPLES if example.runnable]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The committed models, and the ones the docs tell how to make (as the docs make them)."""
    model_dir = tmp_path_factory.mktemp("docs") / "models"
    model_dir.mkdir()
    for model in (ROOT / "models").iterdir():
        (model_dir / model.name).symlink_to(model)
    for script, model in MADE_BY_THE_DOCS.items():
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / script), str(model_dir / model / "1")],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    proc, url = start_server({"MODEL_DIR": str(model_dir)})
    yield url
    stop_server(proc)


def run(command: Command, url: str) -> subprocess.CompletedProcess[str]:
    script = command.text.replace("localhost:8000", url.removeprefix("http://"))
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail\n{script}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("example", RUNNABLE, ids=lambda example: example.where(ROOT))
def test_the_example_answers_as_documented(example: Example, server: str) -> None:
    for command in example.commands:
        where = f"{example.path.relative_to(ROOT)}:{command.line}"
        assert shows_errors(command), f"{where}: curl without -sS or --fail-with-body hides errors"
        done = run(command, server)
        assert done.returncode == 0, f"{where}: exit {done.returncode}: {done.stderr[-2000:]}"
        output = done.stdout
        if command.answer is None:
            assert output.strip(), f"{where}: printed nothing"
            try:
                body = json.loads(output)
            except ValueError:
                continue  # text, such as /metrics: it answered
            assert not (isinstance(body, dict) and "error" in body), f"{where}: {output[:500]}"
            continue
        try:
            actual = json.loads(output)
        except ValueError:
            pytest.fail(f"{where}: not JSON: {output[:500]!r} {done.stderr[-500:]}")
        problems = mismatches(parse_answer(command.answer), actual)
        assert not problems, f"{where}: the answer differs from the docs:\n" + "\n".join(
            problems[:20]
        )


def test_the_docs_have_curl_examples_to_run() -> None:
    """The test above runs something: most curl examples, with answers to compare."""
    runnable = RUNNABLE
    commands = [command for example in runnable for command in example.commands]
    answered = [command for command in commands if command.answer is not None]
    assert len(runnable) >= 12, [example.where(ROOT) for example in runnable]
    assert len(answered) >= 12
    assert any("examples/seven.png" in command.text for command in answered)


def test_the_example_images_are_what_their_script_makes() -> None:
    """examples/*.png are the script's output (pixels; PNG bytes may differ by zlib)."""
    made = runpy.run_path(str(ROOT / "examples" / "make_examples.py"))["images"]()
    assert sorted(made) == sorted(p.name for p in (ROOT / "examples").glob("*.png"))
    for name, pixels in made.items():
        committed = np.asarray(Image.open(ROOT / "examples" / name))
        np.testing.assert_array_equal(committed, pixels, err_msg=name)


# ---- the convention itself (no server) --------------------------------------------------------


def test_an_answer_comment_belongs_to_its_command() -> None:
    body = """curl -sS a   # {"a": 1}
curl -sS -d '{"x": [1,
  2]}' b \\
  -X POST
# {"b": [1, 2,
#   3]} and words after it
curl -sS c    # just a comment
"""
    first, second, third = split_commands(body, 10)
    assert (first.line, second.line, third.line) == (10, 11, 16)
    assert second.text.endswith("-X POST")
    assert "#" not in second.text
    answers = [answer_in_comments(command) for command in (first, second, third)]
    assert parse_answer(answers[0] or "") == {"a": 1}
    assert parse_answer(answers[1] or "") == {"b": [1, 2, 3]}
    assert answers[2] is None  # words, not JSON


def test_answers_are_found_and_parsed(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        '```bash\ncurl -sS a\n```\n```json\n{"a": [1, ...]}\n```\n\n'
        '```bash\ncurl -sS b  # {"b": {"c": 2, ...}, ...}\ncurl -sS c\n```\n'
        "```bash\nmake run\n```\n"
    )
    first, second, third = examples(doc)
    assert parse_answer(first.commands[0].answer or "") == {"a": [1, ELLIPSIS]}
    assert parse_answer(second.commands[0].answer or "") == {
        "b": {"c": 2, ELLIPSIS: None},
        ELLIPSIS: None,
    }
    assert second.commands[1].answer is None
    assert (first.runnable, second.runnable, third.runnable) == (True, True, False)


def test_a_json_block_after_several_commands_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```bash\ncurl -sS a\ncurl -sS b\n```\n```json\n{}\n```\n")
    with pytest.raises(ValueError, match="not one command"):
        examples(doc)


@pytest.mark.parametrize(
    ("documented", "actual", "differs"),
    [
        ('{"score": 0.8234}', {"score": 0.82345}, False),  # within the tolerance
        ('{"score": 0.8234}', {"score": 0.8284}, True),  # a new model's score
        ('{"version": 1}', {"version": 2}, True),
        ('{"a": 1}', {"a": 1, "b": 2}, True),  # an undocumented member
        ('{"a": 1, ...}', {"a": 1, "b": 2}, False),
        ('{"a": 1, "b": 2}', {"a": 1}, True),
        ("[1, 2]", [1, 2, 3], True),
        ("[1, 2, ...]", [1, 2, 3], False),
        ('{"label": "positive"}', {"label": "negative"}, True),
        ('{"ok": true}', {"ok": 1}, True),
    ],
)
def test_mismatches(documented: str, actual: object, differs: bool) -> None:
    assert bool(mismatches(parse_answer(documented), actual)) is differs


@pytest.mark.parametrize(
    ("command", "shows"),
    [
        ("curl -sS localhost:8000/healthz", True),
        ("curl -s localhost:8000/healthz", False),
        ("curl localhost:8000/healthz", False),
        ("curl --fail-with-body -s localhost:8000/healthz", True),
        ("curl -s --show-error localhost:8000/healthz", True),
    ],
)
def test_curl_must_show_its_errors(command: str, shows: bool) -> None:
    assert shows_errors(Command(command, 1)) is shows
