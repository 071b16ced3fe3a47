"""``python -m evaluation FOLDER... [--write]``: measure model versions on the held-out sets."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path
from typing import Any

import tensorflow as tf


def measure(path: Path) -> dict[str, Any]:
    """Every measure of the version in ``path`` (its model is named in its metadata.json)."""
    from evaluation import measures

    name = json.loads((path / "metadata.json").read_text())["model"]
    if name == "sentiment":
        figures = measures.sentiment_measures(measures.SavedModelSentiment(path))
    elif name == "digits":
        figures = measures.digit_measures(measures.SavedModelDigits(path))
    else:
        raise SystemExit(f"{path}: no measures for model {name!r}")
    figures["batch64_ms"] = measures.latency(path, name)
    return figures


def write(path: Path, figures: dict[str, Any], command: str) -> None:
    """Put ``figures`` under ``measures`` in the folder's metadata.json (replaced atomically)."""
    file = path / "metadata.json"
    metadata = json.loads(file.read_text())
    metadata["measures"] = {**figures, "command": command}
    staging = file.with_name(f".metadata.json.{os.getpid()}")
    staging.write_text(json.dumps(metadata, indent=2) + "\n")
    staging.replace(file)


def version_folder(folder: Path) -> Path:
    """The folder itself, or for a model's folder (``models/digits``) its highest version."""
    if (folder / "metadata.json").is_file():
        return folder
    versions = [p for p in folder.glob("*") if p.name.isascii() and p.name.isdigit()]
    if not versions:
        raise SystemExit(f"{folder} is neither a version folder nor a model's folder")
    return max(versions, key=lambda p: int(p.name))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__)
    parser.add_argument(
        "folders",
        nargs="+",
        type=Path,
        help="version folders (models/digits/2), or model folders for their highest version",
    )
    parser.add_argument("--write", action="store_true", help="write into each metadata.json")
    args = parser.parse_args(argv)
    # As the service runs its models (TF_INTRA_OP_THREADS=1, TF_INTER_OP_THREADS=1), so that
    # the latencies compare with what it sees.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    for folder in map(version_folder, args.folders):
        figures = measure(folder)
        print(f"{folder}: {json.dumps(figures)}")
        if args.write:
            write(
                folder, figures, shlex.join(["python", "-m", "evaluation", str(folder), "--write"])
            )


if __name__ == "__main__":
    main()
