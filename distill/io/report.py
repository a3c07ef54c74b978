"""What a reader kept, dropped and skipped: the receipt that makes "nothing dropped silently" true.

Corpus readers mostly succeed, but real corpora carry entity types outside the label set,
relation lines the project does not use, and a few spans whose offsets do not match their text.
Each reader fills one ``ReadReport`` so a caller (or the CLI) can print exactly what was left
out, with the first examples, instead of the data quietly shrinking.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_EXAMPLES = 5
MISMATCH_POLICIES = ("raise", "report")


def check_mismatch_policy(on_mismatch: str) -> None:
    """Every reader takes the same ``on_mismatch`` policy: raise on a span whose text does not
    match, or leave it out and count it in the :class:`ReadReport`."""
    if on_mismatch not in MISMATCH_POLICIES:
        raise ValueError(f"on_mismatch must be one of {MISMATCH_POLICIES}, got {on_mismatch!r}")


@dataclass
class ReadReport:
    """Counts for one read: documents, kept spans per label, dropped types, skipped lines, problems.

    ``problems`` are spans or records the reader could not keep as they were (offset mismatch,
    out-of-range offsets, repaired mention text...); ``examples`` holds the first few messages
    of each problem kind, each naming file and line.
    """

    source: str = ""
    documents: int = 0
    kept: Counter = field(default_factory=Counter)
    dropped_types: Counter = field(default_factory=Counter)
    skipped_lines: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def problem(self, kind: str, message: str) -> None:
        """Count one problem of ``kind`` and keep its message if it is among the first few."""
        self.problems[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(message)

    @property
    def n_problems(self) -> int:
        return sum(self.problems.values())

    def merge(self, other: "ReadReport") -> "ReadReport":
        """Add ``other``'s counts into this report (several files of one corpus)."""
        self.documents += other.documents
        self.kept.update(other.kept)
        self.dropped_types.update(other.dropped_types)
        self.skipped_lines.update(other.skipped_lines)
        for kind, n in other.problems.items():
            self.problems[kind] += n
            ex = self.examples.setdefault(kind, [])
            ex.extend(other.examples.get(kind, [])[: MAX_EXAMPLES - len(ex)])
        return self

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints after reading a corpus)."""
        def fmt(c: Counter) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in c.most_common()) or "none"

        lines = [
            f"{self.source or 'read'}: {self.documents:,} documents; kept spans: {fmt(self.kept)}",
        ]
        if self.dropped_types:
            lines.append(f"  dropped entity types (not in the label map): {fmt(self.dropped_types)}")
        if self.skipped_lines:
            lines.append(f"  skipped lines (not used): {fmt(self.skipped_lines)}")
        for kind, n in self.problems.most_common():
            lines.append(f"  {kind}: {n:,}")
            lines.extend(f"    e.g. {m}" for m in self.examples.get(kind, []))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "documents": self.documents,
            "kept": dict(self.kept),
            "dropped_types": dict(self.dropped_types),
            "skipped_lines": dict(self.skipped_lines),
            "problems": dict(self.problems),
            "examples": {k: list(v) for k, v in self.examples.items()},
        }
