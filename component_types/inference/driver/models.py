"""The city's model store: which models exist, their runtime, and which files a request may load.

    <store>/<model>/model.json          {"name", "runtime", "versions", "inputs", "description"}
    <store>/<model>/<version>/<file>    the model file (scikit-learn: model.joblib)

Requests name a model (spec.model, optional spec.modelVersion) or a file (spec.modelUri, relative to the
store). Anything that could leave the store (absolute paths, schemes, '..', symlinks out) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cityhub_operator.driver import PermanentBackendError

FORMATS = {"mlserver_sklearn.SKLearnModel": (".joblib", ".pkl", ".pickle")}
"""Runtime → the model file suffixes it loads."""
DEFAULT_FILES = {"mlserver_sklearn.SKLearnModel": "model.joblib"}


@dataclass(frozen=True)
class ModelFile:
    model: str
    runtime: str
    version: str
    relative: str
    """Path inside the store, e.g. traffic-flow/1/model.joblib."""


def catalog(store: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not store.is_dir():
        return out
    for meta in sorted(store.glob("*/model.json")):
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out[meta.parent.name] = doc
    return out


def check_uri(uri: str, runtime: str) -> str:
    """The store-relative path of spec.modelUri, or PermanentBackendError naming the field and the fix."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        raise PermanentBackendError(
            "InvalidModelUri",
            f"spec.modelUri {uri!r} holds control characters: give a plain path such as "
            "traffic-flow/1/model.joblib",
        )
    if "://" in uri or uri.startswith(("/", "~", "\\")) or ":" in uri.split("/")[0]:
        raise PermanentBackendError(
            "InvalidModelUri",
            f"spec.modelUri {uri!r}: give a path relative to the city's model store, e.g. "
            "traffic-flow/1/model.joblib (no schemes or absolute paths)",
        )
    parts = PurePosixPath(uri).parts
    if any(p in ("..", ".") for p in parts) or "\\" in uri or not parts:
        raise PermanentBackendError(
            "InvalidModelUri",
            f"spec.modelUri {uri!r} may not contain '..' or '.' segments: give a path inside the model "
            "store, e.g. traffic-flow/1/model.joblib",
        )
    suffixes = FORMATS.get(runtime, ())
    if PurePosixPath(uri).suffix.lower() not in suffixes:
        raise PermanentBackendError(
            "UnsupportedModelFormat",
            f"spec.modelUri {uri!r}: format {PurePosixPath(uri).suffix or '(none)'} is not supported by "
            f"runtime {runtime}; supported: {', '.join(suffixes) or 'none'}",
        )
    return str(PurePosixPath(*parts))


def resolve(store: Path, spec: Mapping[str, Any], *, check_files: bool = True) -> ModelFile:
    """The model file a request serves; PermanentBackendError names the field to change."""
    models = catalog(store)
    name = str(spec.get("model") or "")
    meta = models.get(name)
    if meta is None:
        raise PermanentBackendError(
            "UnknownModel",
            f"spec.model {name!r} is not in the catalog; choose one of "
            + (
                ", ".join(sorted(models))
                or "(none: the model store is empty; run component_types/inference/install.sh)"
            ),
        )
    runtime = str(meta.get("runtime", ""))
    if runtime not in FORMATS:
        raise PermanentBackendError(
            "UnsupportedRuntime",
            f"spec.model {name!r}: runtime {runtime!r} is not served here; ask the platform team",
        )
    versions = [str(v) for v in meta.get("versions") or []]
    version = str(spec.get("modelVersion") or (versions[-1] if versions else ""))
    if version not in versions:
        raise PermanentBackendError(
            "UnknownModelVersion",
            f"spec.modelVersion {version!r} of model {name!r} does not exist; choose one of "
            f"{', '.join(versions) or 'none'}",
        )
    uri = spec.get("modelUri")
    relative = check_uri(str(uri), runtime) if uri else f"{name}/{version}/{DEFAULT_FILES[runtime]}"
    if check_files:
        root = store.resolve()
        target = (store / relative).resolve()
        if not target.is_relative_to(root):
            raise PermanentBackendError(
                "InvalidModelUri", f"spec.modelUri {uri!r} leads out of the model store (a symlink): refused"
            )
        if not target.is_file():
            field = "spec.modelUri" if uri else "spec.modelVersion"
            raise PermanentBackendError(
                "ModelFileNotFound", f"{field}: {relative} is not in the model store; check the path"
            )
    return ModelFile(model=name, runtime=runtime, version=version, relative=relative)
