"""Teacher specs -> teacher objects: ``family:name`` strings, as used on the CLI and in recipes.

Families are imported lazily so that asking for the dictionary teacher never imports an LLM SDK.
Each family module exposes ``from_spec(name: str, **options) -> Teacher``.
"""
from __future__ import annotations

import importlib
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from teachers.base import Teacher

FAMILIES: dict[str, str] = {
    "ontology": "teachers.ontology",
    "openai": "teachers.openai",
    "gemini": "teachers.gemini",
    "local": "teachers.local",
}

# Families that send note text off this machine: refused unless external APIs are allowed.
EXTERNAL = {"openai", "gemini"}


class ExternalAPIRefused(PermissionError):
    """A teacher would send patient text off the machine without explicit permission."""


def parse_spec(spec: str) -> tuple[str, str]:
    family, _, name = spec.partition(":")
    if family not in FAMILIES:
        raise ValueError(f"unknown teacher family {family!r} in {spec!r}; known: {', '.join(sorted(FAMILIES))}")
    return family, name


def is_loopback(base_url: str | None) -> bool:
    """True when ``base_url``'s host is this machine (localhost, 127.x.x.x, ::1).

    The parsed host name is compared, never a substring: ``localhost.example.com`` or
    ``127.0.0.1.nip.io`` are remote servers and must count as external.
    """
    if not base_url:
        return False
    try:
        host = urlsplit(base_url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_external(spec: str, options: dict[str, Any] | None = None) -> bool:
    """True when the teacher would send text to a remote service.

    An OpenAI-compatible server on loopback (a local vLLM / llama.cpp server) is not external.
    """
    family, _ = parse_spec(spec)
    if family not in EXTERNAL:
        return False
    return not is_loopback((options or {}).get("base_url"))


def make_teacher(spec: str, allow_external: bool = False, **options: Any) -> Teacher:
    """Build a teacher from ``family:name``; refuses remote APIs unless ``allow_external``."""
    family, name = parse_spec(spec)
    if is_external(spec, options) and not allow_external:
        raise ExternalAPIRefused(
            f"teacher {spec!r} sends note text to an external API; pass --allow-external "
            "(or set allow_external_api = true in the recipe) if your data may leave this machine"
        )
    module = importlib.import_module(FAMILIES[family])
    return module.from_spec(name, **options)
