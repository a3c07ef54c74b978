"""OBO 1.2 reader for DOID, SYMP and HPO: term names and synonyms, obsolete terms dropped.

Only what a dictionary matcher and concept linking need is kept (id, name, synonyms with their
scope, is_a parents, cross-references such as ``MESH:D003920``);
the files themselves are never modified (HPO's licence forbids altering them).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterator

from ontologies._io import open_text

_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"\s+(EXACT|RELATED|BROAD|NARROW)\b')


class OboFormatError(ValueError):
    """A stanza the reader cannot parse (the message names file and line)."""


@dataclass
class OboTerm:
    id: str
    name: str
    synonyms: list[tuple[str, str]] = field(default_factory=list)  # (text, scope)
    is_a: list[str] = field(default_factory=list)
    xrefs: list[str] = field(default_factory=list)
    namespace: str = ""
    obsolete: bool = False

    def names(self, scopes: tuple[str, ...] = ("EXACT",)) -> list[str]:
        """The preferred name plus synonyms of the given scopes (EXACT by default: the others
        are broader or narrower concepts and would mislabel mentions)."""
        return [self.name] + [s for s, scope in self.synonyms if scope in scopes]


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def read_obo(path: str | os.PathLike, keep_obsolete: bool = False) -> Iterator[OboTerm]:
    """Yield the ``[Term]`` stanzas of an OBO file (plain or .gz), skipping obsolete terms."""
    term: OboTerm | None = None
    in_term = False
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\r\n")
            if line.startswith("["):
                if term is not None and (keep_obsolete or not term.obsolete):
                    yield term
                term = None
                in_term = line.strip() == "[Term]"
                continue
            if not in_term or not line or line.startswith("!"):
                continue
            tag, sep, value = line.partition(": ")
            if not sep:
                continue
            value = _strip_comment(value)
            if tag == "id":
                term = OboTerm(id=value, name="")
            elif term is None:
                raise OboFormatError(f"{path}:{lineno}: tag {tag!r} before the stanza's id")
            elif tag == "name":
                term.name = _unescape(value)
            elif tag == "synonym":
                m = _SYNONYM.match(value)
                if not m:
                    raise OboFormatError(f"{path}:{lineno}: malformed synonym line {line!r}")
                term.synonyms.append((_unescape(m.group(1)), m.group(2)))
            elif tag == "is_a":
                term.is_a.append(value.split()[0])
            elif tag == "xref":
                term.xrefs.append(value.split()[0])
            elif tag == "namespace":
                term.namespace = value
            elif tag == "is_obsolete":
                term.obsolete = value.strip() == "true"
    if term is not None and (keep_obsolete or not term.obsolete):
        yield term


def _strip_comment(value: str) -> str:
    """Drop a trailing `` ! comment`` (OBO's inline comment), but not a ``!`` inside quotes."""
    if " ! " in value and not value.startswith('"'):
        value = value.split(" ! ", 1)[0]
    return value.strip()
