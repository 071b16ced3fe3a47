"""The model folder on disk, laid out as TensorFlow Serving's: ``<MODEL_DIR>/<name>/<version>/``.

This module only reads. It tells the lifecycle (:mod:`app.lifecycle`):

* which models and versions are there. A version folder is named by an ASCII decimal number
  that fits an int64; any other name is skipped with one warning, as TF Serving skips it, so
  two folders can never claim one version (``int()`` reads an Arabic-Indic one as 1). Hidden entries
  (``.name``) are skipped silently: that is where a version is written before it is renamed
  into place;
* a fingerprint of each version folder (every file's path, size and modification time), so
  that a folder still being copied is told from a finished one: the lifecycle loads a folder
  only once its fingerprint has stood still for a poll period;
* each model's labels (``<MODEL_DIR>/<name>/labels.json``, ``{"stable": 1, "canary": 2}``);
* and, in :class:`VersionPolicy`, which of the versions to serve.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

VERSION_NAME = re.compile(r"[0-9]{1,18}")  # ASCII digits only; 18 of them always fit an int64
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
LABEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
LABELS_FILE = "labels.json"
SAVED_MODEL_PARTS = {"variables", "assets", "assets.extra", "fingerprint.pb"}

# (path relative to the version folder, size, mtime in ns) of every entry, sorted.
Fingerprint = tuple[tuple[str, int, int], ...]


class OnceLog:
    """Log a condition once, not at every poll; log it again only after it has cleared."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._active: set[str] = set()

    def warning(self, key: str, message: str, *args: object) -> None:
        self._emit(logging.WARNING, key, message, *args)

    def error(self, key: str, message: str, *args: object) -> None:
        self._emit(logging.ERROR, key, message, *args)

    def clear(self, key: str) -> None:
        self._active.discard(key)

    def _emit(self, level: int, key: str, message: str, *args: object) -> None:
        if key not in self._active:
            self._active.add(key)
            self._log.log(level, message, *args)


@dataclass(frozen=True)
class VersionDir:
    """One ``<name>/<version>/`` folder as it was when scanned."""

    version: int
    path: Path
    fingerprint: Fingerprint
    newest_change: float  # the latest modification time of anything in it, Unix seconds


@dataclass(frozen=True)
class ModelDir:
    """One ``<name>/`` folder: its version folders and its labels file, as scanned."""

    name: str
    path: Path
    versions: dict[int, VersionDir] = field(default_factory=dict)
    labels: dict[str, int] | None = None  # None: a labels file that cannot be read (keep the last)


def scan(model_dir: Path, once: OnceLog) -> dict[str, ModelDir]:
    """Every model folder under ``model_dir`` with its version folders, fingerprinted.

    Tolerant, for the poller: what it skips it logs once. ``FileNotFoundError`` if
    ``model_dir`` itself is gone.
    """
    models: dict[str, ModelDir] = {}
    for entry in sorted(os.scandir(model_dir), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if not MODEL_NAME.fullmatch(entry.name):
            once.warning(f"name:{entry.path}", "skipping %s: not a model name", entry.path)
            continue
        models[entry.name] = scan_model(Path(entry.path), once)
    return models


def scan_model(model_root: Path, once: OnceLog) -> ModelDir:
    versions: dict[int, VersionDir] = {}
    try:
        entries = sorted(os.scandir(model_root), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    misplaced = any(entry.name == "saved_model.pb" and entry.is_file() for entry in entries)
    if misplaced:
        once.warning(
            f"misplaced:{model_root}",
            "%s holds a SavedModel itself, not in a version folder: move it into %s/1/ "
            "(the layout is <name>/<version>/saved_model.pb)",
            model_root,
            model_root,
        )
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if misplaced and entry.name in SAVED_MODEL_PARTS:
            continue  # said once above
        if not VERSION_NAME.fullmatch(entry.name):
            once.warning(
                f"version:{entry.path}",
                "skipping %s: a version folder's name must be a number in ASCII digits",
                entry.path,
            )
            continue
        path = Path(entry.path)
        version = int(entry.name)
        if version in versions:  # "01" and "1": the same version twice
            once.warning(
                f"twice:{path}",
                "skipping %s: version %d is also in %s",
                path,
                version,
                versions[version].path,
            )
            continue
        fingerprint, newest = fingerprint_of(path)
        versions[version] = VersionDir(version, path, fingerprint, newest)
    return ModelDir(model_root.name, model_root, versions, read_labels(model_root, once))


def fingerprint_of(path: Path) -> tuple[Fingerprint, float]:
    """Every entry below ``path`` with its size and modification time; the newest of those."""
    found: list[tuple[str, int, int]] = []
    newest = 0.0
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
            folder_stat = folder.stat()
        except OSError:  # vanished or unreadable while we looked: it is changing
            found.append((str(folder.relative_to(path)), -1, time.time_ns()))
            continue
        newest = max(newest, folder_stat.st_mtime)
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=True)
            except OSError:
                found.append((str(Path(entry.path).relative_to(path)), -1, time.time_ns()))
                continue
            relative = str(Path(entry.path).relative_to(path))
            found.append((relative, stat.st_size, stat.st_mtime_ns))
            newest = max(newest, stat.st_mtime)
            if entry.is_dir(follow_symlinks=True):
                stack.append(Path(entry.path))
    return tuple(sorted(found)), newest


def read_labels(model_root: Path, once: OnceLog) -> dict[str, int] | None:
    """``labels.json`` as ``{label: version}``: empty if absent, None (logged once) if invalid."""
    path = model_root / LABELS_FILE
    key = f"labels:{path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        once.clear(key)
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        once.error(key, "cannot read %s: %s; labels of %s unchanged", path, exc, model_root.name)
        return None
    try:
        labels = parse_labels(text)
    except ValueError as exc:
        once.error(key, "%s: %s; labels of %s unchanged", path, exc, model_root.name)
        return None
    once.clear(key)
    return labels


def parse_labels(text: str) -> dict[str, int]:
    """``{"stable": 1, "canary": 2}`` -> the same dict; ValueError saying what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError('expected an object such as {"stable": 1, "canary": 2}')
    labels: dict[str, int] = {}
    for label, version in data.items():
        if not LABEL_NAME.fullmatch(label):
            raise ValueError(f"{label!r} is not a label (a letter, then letters, digits, _ . -)")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"label {label!r} must name a version number, not {version!r}")
        labels[label] = version
    return labels


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model to serve, as TensorFlow Serving's ``model_version_policy``.

    ``latest`` (the highest version), ``latest:N`` (the N highest), ``all``, or
    ``specific:V[,V...]``.
    """

    kind: Literal["latest", "all", "specific"] = "latest"
    count: int = 1
    versions: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        kind, _, argument = text.strip().partition(":")
        if kind == "all" and not argument:
            return cls("all")
        if kind == "latest":
            if not argument:
                return cls("latest", 1)
            if VERSION_NAME.fullmatch(argument) and int(argument) >= 1:
                return cls("latest", int(argument))
        if kind == "specific" and argument:
            parts = [part.strip() for part in argument.split(",")]
            if all(VERSION_NAME.fullmatch(part) for part in parts):
                return cls("specific", versions=frozenset(int(part) for part in parts))
        raise ValueError(
            f"{text!r} is not a version policy: use latest, latest:N (N >= 1), all, "
            "or specific:V[,V...]"
        )

    def select(self, versions: Iterable[int]) -> set[int]:
        """The versions this policy serves, out of those that can be served."""
        present = set(versions)
        if self.kind == "all":
            return present
        if self.kind == "specific":
            return present & self.versions
        return set(sorted(present, reverse=True)[: self.count])

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        if self.kind == "specific":
            return "specific:" + ",".join(str(v) for v in sorted(self.versions))
        return "latest" if self.count == 1 else f"latest:{self.count}"
