"""The command-line options both training scripts share."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.data import default_data_dir

DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent.parent / "models"


def base_parser(description: str, batch_size: int | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="folder of local copies of the data sets ($DATA_DIR); without one, or for a file it "
        "lacks, the official files are downloaded into Keras' cache",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help="models root; the model goes to <output-dir>/<name>/<version>/",
    )
    parser.add_argument("--version", type=int, default=None, help="version (default: next free)")
    recipes = "None: the recipe's own" if batch_size is None else None
    parser.add_argument("--batch-size", type=int, default=batch_size, help=recipes)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N training and N test examples (smoke runs)",
    )
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras verbosity")
    return parser
