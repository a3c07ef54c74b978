"""What every LLM teacher shares: chunking, caching, retries, output repair, alignment, ledger.

A client (``teachers.openai``, ``teachers.gemini``, ``teachers.local``) only implements
:meth:`LLMTeacher._request` — one call to its model, raising :class:`TransientError` for what
is worth retrying (429, 5xx, timeouts; with the server's Retry-After) and
:class:`PermanentError` otherwise. Everything else lives here, once:

- notes are split into overlapping chunks that fit the model (``chunk_chars``), spans are
  merged back without duplicates;
- each chunk's request is looked up in the SQLite cache first; a rerun sends nothing;
- retries use tenacity with exponential backoff, honouring Retry-After;
- the answer is parsed leniently; malformed answers are re-asked, truncated ones salvaged
  (complete items kept) after re-asking with a larger output cap (never with the same full
  cap again); answers cut by the cap are not cached, since a larger ``max_output_tokens``
  gives a different answer; a document whose chunk finally fails yields a
  :class:`~teachers.base.LabelFailure` naming the reason;
- documents run on a bounded thread pool, results stream back in input order (threads rather
  than asyncio: the SDK clients are synchronous and thread-safe, and ``label`` then needs no
  event loop of its own, which would clash with notebooks and Ray workers);
- the ledger (:class:`~teachers.base.Usage`) counts requests, tokens, seconds and dollars
  from :mod:`teachers.cost`; ``stats`` counts alignment and repair outcomes.

Logs carry document ids and counts only, never note text or keys.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from distill.documents import DEFAULT_LABELS, Document, Span
from teachers.align import Entity, align, chunk_text, resolve_overlaps
from teachers.base import LabelFailure, Usage, parse_flag
from teachers.cache import CachedResponse, open_cache
from teachers.cost import FREE, Price, UnknownPrice, price_for
from teachers.prompts import ExamplePool, Prompt, PromptBuilder
from teachers.registry import is_loopback  # noqa: F401  (re-exported: one loopback test for all)

log = logging.getLogger("teachers.llm")


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the server's requested wait in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """A failure that retrying cannot fix (bad request, auth, unknown model)."""


class MalformedOutput(ValueError):
    """The model's answer could not be read as entities at all."""


#: finish reasons of an answer that was stopped before it was complete (cap, local loop guard,
#: OpenAI's content filter)
CUT = ("length", "repetition", "unsupported", "content_filter")
#: cut answers that are never cached: a larger cap, or simply asking again, may give more
UNCACHED = ("length", "content_filter")


def usable_cached(hit: CachedResponse | None) -> bool:
    """A cached answer worth replaying: not one cut by the output cap or a content filter (such
    answers are no longer stored, but caches written before may hold them), which a rerun asks again."""
    return hit is not None and hit.finish_reason not in UNCACHED


class ChunkFailed(Exception):
    """A chunk could not be labelled; becomes the document's LabelFailure reason."""


@dataclass
class Parsed:
    entities: list[Entity]
    repaired: bool = False  # something was cut off or unreadable and had to be skipped


# --- output parsing ------------------------------------------------------------------------

_TEXT_KEYS = ("text", "mention", "entity", "span")
_LABEL_KEYS = ("label", "type", "category", "entity_type")


def label_map(labels: Sequence[str]) -> dict[str, str]:
    """Accepted spellings -> label: exact, upper-case, plural, and the first letter if unique."""
    out: dict[str, str] = {}
    initials = Counter(lab[0].upper() for lab in labels)
    for lab in labels:
        for key in (lab, lab.upper(), lab.upper() + "S", lab.upper().replace("_", " ")):
            out[key] = lab
        if initials[lab[0].upper()] == 1:
            out[lab[0].upper()] = lab
    return out


def _entity_from(obj: Any, labels: dict[str, str]) -> Entity | None:
    if not isinstance(obj, dict):
        return None
    text = next((obj[k] for k in _TEXT_KEYS if isinstance(obj.get(k), str)), None)
    label = next((obj[k] for k in _LABEL_KEYS if isinstance(obj.get(k), str)), None)
    if text is None or label is None:
        return None
    ctx = obj.get("context") if isinstance(obj.get("context"), str) else None
    return Entity(text, labels.get(label.strip().upper(), label.strip()), ctx or None)


def parse_json(raw: str, labels: Sequence[str]) -> Parsed:
    """Entities from a JSON answer; salvages complete items from a truncated or garbled one.

    Also reads a bare entity object and JSON lines (one object per line): ``repaired`` is set
    only when text outside the decoded items was skipped, not for a harmless layout.
    """
    lmap = label_map(labels)
    s = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", raw.strip())
    try:
        data = json.loads(s)
        items = data.get("entities", [data] if _entity_from(data, lmap) else None) if isinstance(data, dict) else data
        if isinstance(items, list):
            ents = [_entity_from(o, lmap) for o in items]
            return Parsed([e for e in ents if e is not None], repaired=any(e is None for e in ents))
    except json.JSONDecodeError:
        pass
    # Salvage: decode every complete {...} item that looks like an entity (the first too:
    # JSON lines start with an item, not with a wrapper object).
    decoder = json.JSONDecoder()
    found: list[Entity] = []
    skipped: list[str] = []  # text between the decoded items
    done = 0
    i = s.find("{")
    while i >= 0:
        try:
            obj, end = decoder.raw_decode(s, i)
        except json.JSONDecodeError:
            i = s.find("{", i + 1)
            continue
        ent = _entity_from(obj, lmap)
        if ent is not None:
            found.append(ent)
            skipped.append(s[done:i])
            done = end
            i = s.find("{", end)
        else:
            i = s.find("{", i + 1)
    skipped.append(s[done:])
    if not found and not re.fullmatch(r'\s*\{\s*"entities"\s*:\s*\[\s*\]?\s*\}?\s*', s):
        raise MalformedOutput(f"no entity could be read from a {len(raw)}-character answer")
    return Parsed(found, repaired=not found or any(re.search(r"[^\s,\[\]]", t) for t in skipped))


_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*([A-Za-z][A-Za-z _]*?)\s*[:|]\s*(.+?)\s*$")


def parse_compact(raw: str, labels: Sequence[str]) -> Parsed:
    """Entities from ``LABEL: mention`` lines; unreadable lines are skipped and flagged."""
    lmap = label_map(labels)
    found: list[Entity] = []
    bad = 0
    lines = [ln for ln in raw.strip().splitlines() if ln.strip()]
    for ln in lines:
        if ln.strip().strip(".").upper() in {"NONE", "NO ENTITIES"}:
            continue
        m = _LINE.match(ln)
        if m and m.group(1).strip().upper() in lmap:
            found.append(Entity(m.group(2).strip().strip('"'), lmap[m.group(1).strip().upper()]))
        else:
            bad += 1
    if lines and bad == len(lines) and not found:
        raise MalformedOutput(f"none of {len(lines)} answer lines has the form LABEL: mention")
    return Parsed(found, repaired=bad > 0)


def parse_output(raw: str, fmt: str, labels: Sequence[str]) -> Parsed:
    return parse_json(raw, labels) if fmt == "json" else parse_compact(raw, labels)


# --- streaming guard -----------------------------------------------------------------------


class RepetitionGuard:
    """Stops a streamed answer that loops (small models repeat themselves until their token cap).

    Fed the text as it streams; :meth:`should_stop` turns true when a line that carries a
    mention has been produced ``max_repeats`` times (structural lines of pretty-printed JSON,
    ``{`` or ``"label": "SYMPTOM"``, repeat in every complete answer), when one mention has been
    listed ``max_repeats`` times (the prompt asks for each string once; with ``per_occurrence``,
    for context mode's one item per occurrence, only once listed more often than the chunk
    contains it, and a mention's line likewise; this catches a JSON list cycling through the same
    few objects on one line, which no line check sees: measured, such loops ran a 1.5B model into
    its output cap on 6 of 20 notes), when the tail of the text is one short unit repeated
    ``max_repeats`` + 1 times (a loop inside a line), or when ``max_unsupported`` mentions in a
    row quote text that is not in the chunk (the model is reciting its examples).
    """

    def __init__(self, chunk: str | None = None, max_repeats: int = 3, max_unsupported: int = 6,
                 per_occurrence: bool = False):
        self.chunk = " ".join(chunk.lower().split()) if chunk else None
        self.per_occurrence = per_occurrence
        self.max_repeats = max_repeats
        self.max_unsupported = max_unsupported
        self.text = ""
        self.reason: str | None = None
        self._lines: Counter[str] = Counter()
        self._mentions: Counter[str] = Counter()
        self._unsupported = 0
        self._done_upto = 0
        self._json_upto = 0

    def feed(self, piece: str) -> bool:
        self.text += piece
        for m in _JSON_MENTION.finditer(self.text, self._json_upto):
            self._mention(m.group(1))
            self._json_upto = m.end()
        while "\n" in self.text[self._done_upto :]:
            end = self.text.index("\n", self._done_upto)
            self._line(self.text[self._done_upto : end].strip())
            self._done_upto = end + 1
        if self.reason is None and len(self.text) >= 64:
            tail = self.text[-400:]
            for unit in range(4, 81):
                reps = self.max_repeats + 1
                if len(tail) >= unit * reps and tail[-unit:] * reps == tail[-unit * reps :] and tail[-unit:].strip():
                    self.reason = "repetition"
                    break
        return self.should_stop()

    def _line(self, line: str) -> None:
        if not line:
            return
        jm = _JSON_MENTION.search(line)
        m = None if jm else _LINE.match(line)
        if jm is None and m is None:
            return  # no mention (JSON punctuation, a label line): repeats in any valid answer
        self._lines[line] += 1
        if self._lines[line] >= self._limit(_key(jm.group(1) if jm else m.group(m.lastindex or 1))):
            self.reason = self.reason or "repetition"
        if m is not None:  # JSON mentions were counted as they streamed
            self._mention(m.group(m.lastindex or 1))

    def _limit(self, key: str) -> int:
        """Listings allowed for one mention: context mode lists every occurrence, so a string
        the chunk holds n times may come n times."""
        allowed = self.chunk.count(key) + 1 if self.per_occurrence and self.chunk is not None else 0
        return max(self.max_repeats, allowed)

    def _mention(self, mention: str) -> None:
        key = _key(mention)
        self._mentions[key] += 1
        if self._mentions[key] >= self._limit(key):
            self.reason = self.reason or "repetition"
        if self.chunk is not None:
            if key not in self.chunk:
                self._unsupported += 1
                if self._unsupported >= self.max_unsupported:
                    self.reason = self.reason or "unsupported"
            else:
                self._unsupported = 0

    def should_stop(self) -> bool:
        return self.reason is not None


_JSON_MENTION = re.compile(r'"(?:text|mention)"\s*:\s*"([^"]+)"')

#: bumped when a change to the guard changes which answers it cuts; local teachers put it in
#: their cache fingerprint so answers cut by an older guard are generated again, not replayed
#: (v2: structural JSON lines no longer count as repeated lines)
GUARD_VERSION = 2


def _key(mention: str) -> str:
    return " ".join(mention.lower().split())


# --- retries -------------------------------------------------------------------------------


class _WaitRetryAfter:
    """Wait what the server asked for (Retry-After), else exponential backoff with jitter."""

    def __init__(self, initial: float, maximum: float):
        self.fallback = wait_exponential_jitter(initial=initial, max=maximum, jitter=initial)
        self.maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return min(max(float(after), 0.0), self.maximum)
        return self.fallback(state)


def non_json_answer(url: Any, body: Any) -> TransientError:
    """A 200 whose body is not JSON (an HTML page from a proxy, a cut-off body): a passing
    fault of the path to the API, worth retrying; never a reason to abort the whole run."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return TransientError(f"non-JSON answer from {url}: {' '.join(text.split())[:80]!r}")


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return float(ra)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(ra).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


# --- the shared teacher --------------------------------------------------------------------


class LLMTeacher:
    """Base of all LLM teachers; subclasses implement :meth:`_request` and set ``family``.

    ``chunk_chars``: characters per request (leave room for the prompt in the model's
    context); ``output_factor``: output-token cap per input character of the chunk (the cap
    that stops a looping model from running to its context limit).
    """

    family = "llm"
    #: answers requested per chunk when they come back malformed or cut off (1 = never re-ask)
    default_parse_attempts = 3

    def __init__(
        self,
        model: str,
        *,
        labels: Sequence[str] = DEFAULT_LABELS,
        prompts: PromptBuilder | None = None,
        fmt: str = "json",
        cache: Any = None,
        concurrency: int = 4,
        max_attempts: int = 6,
        parse_attempts: int | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        chunk_chars: int = 6000,
        chunk_overlap: int = 300,
        max_output_tokens: int = 4096,
        output_factor: float | None = None,
        fuzzy_threshold: float = 90.0,
        price: Price | None = None,
        name: str | None = None,
    ):
        self.model = model
        self.prompts = prompts or PromptBuilder(labels=labels, fmt=fmt)
        self.labels = self.prompts.labels
        self.fmt = self.prompts.fmt
        self.name = name or f"{self.family}:{model}"
        self.cache = open_cache(cache)
        self.concurrency = max(1, int(concurrency))
        self.max_attempts = max(1, int(max_attempts))
        self.parse_attempts = max(1, int(parse_attempts or self.default_parse_attempts))
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.chunk_chars = int(chunk_chars)
        self.chunk_overlap = int(chunk_overlap)
        self.max_output_tokens = int(max_output_tokens)
        # JSON costs ~14 tokens per entity, compact lines ~5; ~1 entity per 20 characters is dense
        self.output_factor = float(output_factor) if output_factor is not None else (0.75 if self.fmt == "json" else 0.3)
        self.fuzzy_threshold = float(fuzzy_threshold)
        self.price = price if price is not None else self._default_price()
        self.usage = Usage()
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()

    # -- what subclasses provide --------------------------------------------------------
    def _request(self, prompt: Prompt, max_tokens: int) -> CachedResponse:
        raise NotImplementedError

    def fingerprint_fields(self) -> dict[str, Any]:
        """Everything besides the prompt that changes the answer (model, server, decoding)."""
        return {"family": self.family, "model": self.model}

    def _default_price(self) -> Price:
        return price_for(self.model)

    # -- shared machinery ---------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return json.dumps(self.fingerprint_fields(), sort_keys=True)

    def output_cap(self, chunk: str) -> int:
        return min(self.max_output_tokens, 64 + int(self.output_factor * len(chunk)))

    def label(self, docs: Iterable[Document]) -> Iterator[list[Span]]:
        """Stream one span list (or LabelFailure) per document, in order, ``concurrency`` at a time."""
        if self.concurrency == 1:
            for doc in docs:
                yield self.label_document(doc)
            return
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.family) as pool:
            window: deque = deque()
            for doc in docs:
                window.append(pool.submit(self.label_document, doc))
                if len(window) >= 2 * self.concurrency:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    def label_document(self, doc: Document) -> list[Span]:
        """Label one note chunk by chunk; a chunk that finally fails fails the document."""
        t0 = time.perf_counter()
        pieces = chunk_text(doc.text, self.chunk_chars, self.chunk_overlap)
        spans: list[Span] = []
        for i, (a, b) in enumerate(pieces):
            piece = doc.text[a:b]
            try:
                entities = self._entities(piece, doc.id)
            except ChunkFailed as e:
                log.warning("document %s: chunk %d/%d failed: %s", doc.id, i + 1, len(pieces), e)
                self._count("failed_documents")
                return LabelFailure(f"chunk {i + 1}/{len(pieces)} (characters {a}-{b}): {e}")
            al = align(piece, entities, self.labels, offset=a, fuzzy_threshold=self.fuzzy_threshold, source=self.name)
            spans.extend(al.spans)
            self._count("entities", len(entities))
            self._count("aligned_exact", al.exact)
            self._count("aligned_normalised", al.normalised)
            self._count("aligned_fuzzy", al.fuzzy)
            self._count("unaligned", len(al.unaligned))
        merged = resolve_overlaps(spans)
        log.info("document %s: %d chunks, %d spans, %.1fs", doc.id, len(pieces), len(merged), time.perf_counter() - t0)
        return merged

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _account(self, resp: CachedResponse, seconds: float) -> None:
        with self._lock:
            self.usage.requests += 1
            self.usage.input_tokens += resp.input_tokens
            self.usage.output_tokens += resp.output_tokens
            self.usage.seconds += seconds
            self.usage.dollars += self.price.dollars(resp.input_tokens, resp.output_tokens, batch=resp.batch)

    def _entities(self, piece: str, doc_id: str) -> list[Entity]:
        prompt = self.prompts.build(piece, doc_id=doc_id)
        key = prompt.request_text()
        if self.cache is not None:
            hit = self.cache.get(self.fingerprint, prompt.version, key)
            if usable_cached(hit):
                with self._lock:
                    self.usage.cached_requests += 1
                try:
                    parsed = parse_output(hit.content, self.fmt, self.labels)
                except MalformedOutput:
                    pass  # an answer from an older parser; ask again
                else:
                    if parsed.repaired or hit.finish_reason in CUT:
                        self._count(f"salvaged_{hit.finish_reason}" if hit.finish_reason in CUT else "salvaged")
                    return parsed.entities
        cap = self.output_cap(piece)
        problem = "no attempt"
        for attempt in range(1, self.parse_attempts + 1):
            resp = self._call(prompt, cap)
            last = attempt == self.parse_attempts
            length = resp.finish_reason == "length"
            if length and cap >= self.max_output_tokens:
                last = True  # the same request would be cut at the same place again: don't pay for it
            try:
                parsed = parse_output(resp.content, self.fmt, self.labels)
            except MalformedOutput as e:
                if length:  # cut off inside the first item: only a larger cap can help
                    problem = f"answer truncated at {cap} tokens before its first complete item"
                    if last:
                        break
                    self._count("truncated_retried")
                    cap = min(self.max_output_tokens, cap * 2)
                    continue
                problem = f"malformed answer: {e}"
                self._count("malformed")
                continue
            cut = resp.finish_reason in CUT
            if (parsed.repaired or cut) and not last:
                self._count("truncated_retried")
                if length:
                    cap = min(self.max_output_tokens, cap * 2)
                continue
            if parsed.repaired or cut:
                self._count(f"salvaged_{resp.finish_reason}" if cut else "salvaged")
            if self.cache is not None and resp.finish_reason not in UNCACHED:
                # An answer cut by the output cap is not stored: a rerun with a larger
                # max_output_tokens must ask again rather than replay the cut-off answer
                # (nor one cut by a content filter, which a rerun may get whole).
                self.cache.put(self.fingerprint, prompt.version, key, resp)
            return parsed.entities
        if problem.startswith("answer truncated") and cap >= self.max_output_tokens:
            problem += f" (max_output_tokens={self.max_output_tokens}; raise it or lower chunk_chars)"
        raise ChunkFailed(f"{problem} (after {attempt} attempt{'s' if attempt > 1 else ''})")

    def _call(self, prompt: Prompt, max_tokens: int) -> CachedResponse:
        """One request with retries; accounts every answered request in the ledger."""
        attempts = {"n": 0}

        def once() -> CachedResponse:
            attempts["n"] += 1
            t0 = time.perf_counter()
            try:
                resp = self._request(prompt, max_tokens)
            except Exception:
                with self._lock:
                    self.usage.requests += 1
                    self.usage.seconds += time.perf_counter() - t0
                raise
            self._account(resp, time.perf_counter() - t0)
            return resp

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=_WaitRetryAfter(self.backoff_initial, self.backoff_max),
            retry=retry_if_exception_type(TransientError),
            before_sleep=lambda s: self._count("retries"),
            reraise=True,
        )
        try:
            return retrying(once)
        except TransientError as e:
            raise ChunkFailed(f"{e} (gave up after {attempts['n']} attempts)") from None
        except PermanentError as e:
            raise ChunkFailed(str(e)) from None
        except Exception as e:
            # A library error nobody anticipated (llama.cpp's ValueError, an SDK's AttributeError)
            # fails this document, not the whole run; Ctrl-C and SystemExit are not Exceptions.
            log.warning("unexpected %s from %s", type(e).__name__, self.name, exc_info=log.isEnabledFor(logging.DEBUG))
            raise ChunkFailed(f"unexpected {type(e).__name__}: {str(e)[:300]}") from None

    def summary(self) -> dict[str, Any]:
        """Ledger plus alignment/repair counts, for the CLI and benchmark reports."""
        return {"teacher": self.name, "usage": self.usage.to_dict(), "stats": dict(self.stats),
                "price": {"input_per_1m": self.price.input_per_1m, "output_per_1m": self.price.output_per_1m,
                          "source": self.price.source, "effective": self.price.effective}}


def default_price(model: str, base_url: str | None = None) -> Price:
    """The table's price; a model unknown to the table is free only on a loopback server
    (a local vLLM / llama.cpp), and refused for a remote one rather than billed as zero."""
    try:
        return price_for(model)
    except UnknownPrice:
        if is_loopback(base_url):
            return FREE
        raise


_flag = parse_flag  # on/off options: a misspelt word is an error, not a silent "off"


def build_prompts(options: dict[str, Any]) -> dict[str, Any]:
    """Teacher options (CLI ``--option k=v`` strings or recipe values) -> a ``prompts`` builder.

    ``fmt`` json|compact; ``few_shot`` a labelled JSONL path (or documents) for retrieved
    examples, ``few_shot_layer`` (default gold), ``k``; ``hints`` a dictionary teacher spec
    (e.g. ``ontology:open``) or teacher object; ``context`` true to ask for context words.
    """
    opts = dict(options)
    if "prompts" in opts:
        return opts
    labels = opts.pop("labels", DEFAULT_LABELS)
    if isinstance(labels, str):
        labels = tuple(x.strip() for x in labels.split(",") if x.strip())
    pool = opts.pop("few_shot", None)
    layer = opts.pop("few_shot_layer", "gold")
    if pool is not None and not isinstance(pool, ExamplePool):
        if isinstance(pool, (str, bytes)) or hasattr(pool, "__fspath__"):
            from distill.io.jsonl import read_jsonl

            pool = list(read_jsonl(pool, entities_layer=layer))
        pool = ExamplePool(pool, layer=layer, labels=labels)
    hints = opts.pop("hints", None)
    if isinstance(hints, str):
        from teachers.registry import make_teacher

        hints = make_teacher(hints)  # a dictionary teacher: external ones are refused there
    opts["prompts"] = PromptBuilder(
        labels=labels, fmt=opts.pop("fmt", "json"), pool=pool, k=int(opts.pop("k", 3)),
        hint_teacher=hints, context=_flag(opts.pop("context", False), "context"),
    )
    return opts
