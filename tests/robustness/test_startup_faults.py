"""Start-up faults: ``python -m app`` on a broken MODEL_DIR must fail fast, non-zero, naming the
path that is wrong (and never start serving)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings
from app.lifecycle import Lifecycle
from app.model import ModelLoadError
from app.serving import ModelServer
from tests.conftest import MODELS
from tests.support.server import ROOT, free_port


def model_dir(tmp_path: Path, **models: Path | str | None) -> Path:
    """A MODEL_DIR whose <name>/1 links to a committed version, or is an empty folder (None),
    or holds a file with the given text (str) as its saved_model.pb."""
    root = tmp_path / "models"
    for name, target in models.items():
        version = root / name / "1"
        version.parent.mkdir(parents=True)
        if isinstance(target, Path):
            version.symlink_to(target, target_is_directory=True)
        else:
            version.mkdir()
            if isinstance(target, str):
                (version / "saved_model.pb").write_text(target)
    return root


SENTIMENT = MODELS / "sentiment" / "1"
DIGITS = MODELS / "digits" / "1"


def process_layouts(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (MODEL_DIR, what the message must say): tried with a real ``python -m app``."""
    missing = tmp_path / "missing" / "models"
    no_pb = model_dir(tmp_path / "no_pb", sentiment=None, digits=DIGITS)
    swapped = model_dir(tmp_path / "wrong_signature", sentiment=DIGITS, digits=DIGITS)
    return {
        "missing model dir": (missing, f"{missing} does not exist"),
        "version without saved_model.pb": (
            no_pb,
            f"{(no_pb / 'sentiment' / '1').resolve()} has no saved_model.pb",
        ),
        "sentiment dir holding the digits SavedModel": (
            swapped,
            f"{DIGITS.resolve()}: the 'serving_default' signature takes float32",
        ),
    }


def test_broken_model_dirs_stop_python_m_app_naming_the_path(tmp_path: Path) -> None:
    layouts = process_layouts(tmp_path)
    # All at once: each mostly waits on importing TensorFlow.
    procs = {}
    for name, (directory, _) in layouts.items():
        env = {
            **os.environ,
            "MODEL_DIR": str(directory),
            "PORT": str(free_port()),
            "HOST": "127.0.0.1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    failures = []
    for name, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            failures.append(f"{name}: still running after 120 s")
            continue
        wanted = layouts[name][1]
        if proc.returncode == 0:
            failures.append(f"{name}: exit status 0")
        elif wanted not in output:
            failures.append(f"{name}: {wanted!r} not in the output:\n{output[-2000:]}")
        elif "Uvicorn running" in output:
            failures.append(f"{name}: started serving")
    assert not failures, "\n\n".join(failures)
    print(f"\nstart-up faults: {len(layouts)} broken MODEL_DIRs, each refused with its path")


def test_other_broken_model_dirs_name_the_path(tmp_path: Path) -> None:
    """The same check, in process (starting TensorFlow three more times is slow)."""
    corrupt = model_dir(tmp_path / "corrupt", sentiment="not a protobuf", digits=DIGITS)
    no_version = tmp_path / "no_version" / "models"
    (no_version / "sentiment").mkdir(parents=True)
    (no_version / "digits").symlink_to(DIGITS.parent, target_is_directory=True)
    only_sentiment = model_dir(tmp_path / "only_sentiment", sentiment=SENTIMENT)
    cases = [
        (corrupt, f"{(corrupt / 'sentiment' / '1').resolve()}/saved_model.pb is not a SavedModel"),
        (no_version, f"model directory {no_version.resolve()} lacks REQUIRED_MODELS sentiment"),
        (
            only_sentiment,
            f"model directory {only_sentiment.resolve()} lacks REQUIRED_MODELS digits",
        ),
    ]
    for directory, wanted in cases:
        settings = Settings(
            model_dir=directory, max_batch_size=4, required_models="sentiment,digits"
        )
        lifecycle = Lifecycle(ModelServer(settings, "/CPU:0"), settings)
        with pytest.raises(ModelLoadError) as caught:
            asyncio.run(lifecycle.load_initial())
        assert wanted in str(caught.value)


@pytest.mark.parametrize("value", ["0", "abc"])
def test_bad_settings_stop_start_up(value: str) -> None:
    env = {**os.environ, "MAX_QUEUE_SIZE": value, "PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "max_queue_size" in (result.stdout + result.stderr).lower()
