"""Prompts for LLM teachers: zero-shot guidelines, retrieved few-shot examples, dictionary hints.

Three ingredients, combinable:
- **zero-shot**: the label definitions written as annotation guidelines (what to include,
  what not, where a mention starts and ends) — the same rules a human annotator gets;
- **few-shot**: the ``k`` labelled passages most similar to the note (TF-IDF cosine over a
  labelled pool; kNN example selection is reported to add 15-20 F1 points over fixed examples);
- **ontology hints**: candidate terms a dictionary teacher found in the note, offered as hints
  the model may accept or reject.

Two output formats: ``json`` (a strict schema, for APIs with structured output) and
``compact`` (one ``LABEL: mention`` line per entity — about a third of JSON's tokens per entity,
which is what a small local model on a CPU pays for). Every prompt carries a version string
(style, format, template hash); it is part of the cache key, so editing a prompt never
replays stale answers.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from distill.documents import DEFAULT_LABELS, DISEASE, MEDICATION, SYMPTOM, Document, Span

TEMPLATE_VERSION = "1"

GUIDELINES: dict[str, str] = {
    MEDICATION: (
        "a drug or medicinal substance given or considered for the patient: generic or brand "
        "names, drug classes when they stand for a treatment (\"antibiotics\", \"steroids\"), "
        "vaccines, chemotherapy regimens. Mark the substance name only — not dose, route or "
        "frequency (\"aspirin\" in \"aspirin 81 mg daily\")."
    ),
    DISEASE: (
        "a diagnosed disease, disorder, syndrome, injury or abnormal condition (\"type 2 "
        "diabetes\", \"pneumonia\", \"fracture of the left femur\", \"hypertension\"). Include "
        "modifiers that are part of the name (\"acute myocardial infarction\"); leave out "
        "negation words and certainty words."
    ),
    SYMPTOM: (
        "a sign or symptom the patient has or is asked about: complaints and clinical findings "
        "(\"chest pain\", \"fever\", \"shortness of breath\", \"swelling of the ankle\"). "
        "Symptoms that are negated (\"no fever\") are still mentions: mark \"fever\"."
    ),
}

_ONCE_RULE = "List each distinct mention once; the same words are found everywhere they occur. "
# With context words each item points at one occurrence, so every occurrence must be listed.
_CONTEXT_RULE = ("List every occurrence of a mention as its own item, each with its own context, even when "
                 "the same words occur several times. ")


def _rules(once: str) -> str:
    return (
        "Copy every mention exactly as it is written in the note (same words, same spelling); "
        "never paraphrase, expand abbreviations, or add text that is not in the note. "
        f"{once}Do not mark lab values, procedures, anatomy alone, or people."
    )


GENERAL_RULES = _rules(_ONCE_RULE)
CONTEXT_RULES = _rules(_CONTEXT_RULE)


@dataclass
class Prompt:
    """A rendered request: chat messages plus what the client needs to ask for the format."""

    messages: list[dict[str, str]]
    version: str
    fmt: str
    labels: tuple[str, ...]

    def request_text(self) -> str:
        """The exact request, as hashed for the cache key."""
        return json.dumps(self.messages, ensure_ascii=False, sort_keys=True)

    @property
    def system(self) -> str:
        return "\n\n".join(m["content"] for m in self.messages if m["role"] == "system")

    def chat_without_system(self) -> list[dict[str, str]]:
        return [m for m in self.messages if m["role"] != "system"]


def entity_schema(labels: Sequence[str] = DEFAULT_LABELS, context: bool = False) -> dict[str, Any]:
    """JSON schema of the answer, valid for OpenAI strict mode (all fields required, closed)."""
    props: dict[str, Any] = {"text": {"type": "string"}, "label": {"type": "string", "enum": list(labels)}}
    if context:
        props["context"] = {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "items": {"type": "object", "properties": props, "required": list(props), "additionalProperties": False},
            }
        },
        "required": ["entities"],
        "additionalProperties": False,
    }


@dataclass
class Example:
    """A labelled passage shown to the model as a worked example."""

    text: str
    spans: list[Span]
    doc_id: str = ""


class ExamplePool:
    """Labelled passages retrievable by TF-IDF similarity (scikit-learn).

    Documents are cut into passages of at most ``max_chars`` (short examples keep prompts
    cheap and give small models less to parrot); passages without any entity are skipped.
    """

    def __init__(self, docs: Iterable[Document], layer: str = "gold", max_chars: int = 500,
                 labels: Sequence[str] = DEFAULT_LABELS):
        from sklearn.feature_extraction.text import TfidfVectorizer

        from teachers.align import chunk_text

        self.examples: list[Example] = []
        for doc in docs:
            # discontinuous mentions have no contiguous string to copy: not shown as examples
            spans = [s for s in doc.spans(layer) if s.label in labels and not s.fragments]
            for a, b in chunk_text(doc.text, max_chars, overlap=0):
                inside = [s for s in spans if a <= s.start and s.end <= b]
                if inside:
                    self.examples.append(Example(doc.text[a:b].strip(), [_shift(s, a, doc.text[a:b]) for s in inside], doc.id))
        if not self.examples:
            raise ValueError(f"example pool is empty: no document had spans in layer {layer!r}")
        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
        self._matrix = self._vectorizer.fit_transform([e.text for e in self.examples])
        self.fingerprint = hashlib.sha256(
            json.dumps([(e.doc_id, e.text, [s.to_dict() for s in e.spans]) for e in self.examples]).encode()
        ).hexdigest()[:12]

    def nearest(self, text: str, k: int, exclude_doc: str | None = None) -> list[Example]:
        """The ``k`` most similar passages, never from document ``exclude_doc`` (no leakage
        when the pool and the labelled notes overlap)."""
        sims = (self._matrix @ self._vectorizer.transform([text]).T).toarray().ravel()
        order = sims.argsort()[::-1]
        out = [self.examples[i] for i in order if self.examples[i].doc_id != exclude_doc or not exclude_doc]
        return out[:k]


def _shift(span: Span, a: int, piece: str) -> Span:
    lead = len(piece) - len(piece.lstrip())
    return Span(span.start - a - lead, span.end - a - lead, span.label, span.text)


class PromptBuilder:
    """Renders prompts for one configuration (labels, format, examples, hints)."""

    def __init__(
        self,
        labels: Sequence[str] = DEFAULT_LABELS,
        fmt: str = "json",
        pool: ExamplePool | None = None,
        k: int = 3,
        hint_teacher: Any = None,
        max_hints: int = 40,
        context: bool = False,
        guidelines: dict[str, str] | None = None,
    ):
        if fmt not in ("json", "compact"):
            raise ValueError(f"unknown output format {fmt!r}: use 'json' or 'compact'")
        self.labels = tuple(labels)
        self.fmt = fmt
        self.pool = pool
        self.k = k if pool is not None else 0
        self.hint_teacher = hint_teacher
        self.max_hints = max_hints
        self.context = context and fmt == "json"
        self.guidelines = {lab: (guidelines or GUIDELINES).get(lab, f"a mention of type {lab}") for lab in self.labels}
        style = "zeroshot" if not self.k else f"fewshot{self.k}"
        if hint_teacher is not None:
            style += "+hints"
        template = hashlib.sha256(
            (self._system() + (pool.fingerprint if pool else "") + getattr(hint_teacher, "name", "")).encode()
        ).hexdigest()[:8]
        self.version = f"{style}-{fmt}-v{TEMPLATE_VERSION}-{template}"

    def schema(self) -> dict[str, Any]:
        return entity_schema(self.labels, self.context)

    def _system(self) -> str:
        defs = "\n".join(f"- {lab}: {self.guidelines[lab]}" for lab in self.labels)
        if self.fmt == "json":
            fields = '"text" (the mention) and "label"' + (
                ' and "context" (up to five words of the note just before the mention)' if self.context else ""
            )
            out = f'Answer with a JSON object {{"entities": [...]}} whose items have {fields}. If there are none, answer {{"entities": []}}.'
        else:
            out = (
                "Write one line per mention in the form LABEL: words copied from the note. "
                f"Labels: {', '.join(self.labels)}. Write nothing else; if there is no mention, write NONE."
            )
        rules = CONTEXT_RULES if self.context else GENERAL_RULES
        return (
            "You annotate clinical notes for named entities. Entity types:\n"
            f"{defs}\n\n{rules}\n\n{out}"
        )

    def render_answer(self, text: str, spans: Sequence[Span]) -> str:
        """An example's answer in the output format (also the target a student sees): each
        distinct mention once, or with context words every occurrence with its own context."""
        ordered = sorted(spans, key=lambda s: s.start)
        if self.context:
            items = [{"text": s.text, "label": s.label, "context": " ".join(text[: s.start].split()[-5:])} for s in ordered]
            return json.dumps({"entities": items}, ensure_ascii=False)
        seen: list[tuple[str, str]] = []
        for s in ordered:
            if (s.text, s.label) not in seen:
                seen.append((s.text, s.label))
        if self.fmt == "compact":
            return "\n".join(f"{lab}: {t}" for t, lab in seen) or "NONE"
        return json.dumps({"entities": [{"text": t, "label": lab} for t, lab in seen]}, ensure_ascii=False)

    def hints(self, text: str) -> list[tuple[str, str]]:
        """Candidate (term, label) pairs from the dictionary teacher, unique, in text order."""
        if self.hint_teacher is None:
            return []
        spans = next(iter(self.hint_teacher.label([Document("hints", text)])), [])
        out: list[tuple[str, str]] = []
        for s in sorted(spans, key=lambda s: s.start):
            if s.label in self.labels and (s.text, s.label) not in out:
                out.append((s.text, s.label))
        return out[: self.max_hints]

    def build(self, text: str, doc_id: str | None = None) -> Prompt:
        """The prompt for one chunk of note ``text`` (``doc_id`` keeps its own document out of
        the retrieved examples)."""
        messages = [{"role": "system", "content": self._system()}]
        if self.pool is not None and self.k:
            for ex in reversed(self.pool.nearest(text, self.k, exclude_doc=doc_id)):
                messages.append({"role": "user", "content": _note(ex.text)})
                messages.append({"role": "assistant", "content": self.render_answer(ex.text, ex.spans)})
        user = _note(text)
        hints = self.hints(text)
        if hints:
            listed = "; ".join(f"{t} ({lab})" for t, lab in hints)
            user += (
                "\n\nA medical dictionary matched these candidate terms in the note. They are "
                "hints, not answers: keep the ones that are real mentions under the guidelines, "
                f"drop the others, and add mentions the dictionary missed.\nCandidates: {listed}"
            )
        messages.append({"role": "user", "content": user})
        return Prompt(messages, self.version, self.fmt, self.labels)


def _note(text: str) -> str:
    return f"<note>\n{text}\n</note>"
