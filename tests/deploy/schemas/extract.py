"""Write one version's ``openAPIV3Schema`` of a CustomResourceDefinition as JSON.

    python tests/deploy/schemas/extract.py CRD.yaml VERSION OUTPUT.json

The schema is copied unchanged (sorted keys, so a refresh diffs cleanly); the tests make it
strict when they load it (see ``tests/deploy/crd.py``). Where each file came from: README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def extract(crd_path: Path, version: str) -> dict[str, object]:
    crd = yaml.safe_load(crd_path.read_text())
    if crd.get("kind") != "CustomResourceDefinition":
        raise SystemExit(f"{crd_path}: not a CustomResourceDefinition")
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return {
                "group": crd["spec"]["group"],
                "kind": crd["spec"]["names"]["kind"],
                "version": version,
                "openAPIV3Schema": served["schema"]["openAPIV3Schema"],
            }
    names = [v["name"] for v in crd["spec"]["versions"]]
    raise SystemExit(f"{crd_path}: no version {version!r} (has {names})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    schema = extract(Path(sys.argv[1]), sys.argv[2])
    Path(sys.argv[3]).write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
