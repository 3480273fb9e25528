"""The model host: the child process that owns one llama.cpp model and context.

Started by ``EngineClient`` with the ``spawn`` start method (``host_main`` is the target), it
reads JSON requests from its pipe (``protocol.py``) and answers with JSON events. Its stdout and
stderr go to a log file the client reads after a crash, so even llama.cpp's own abort messages
(written straight to stderr) reach the user; llama.cpp's log callback feeds the same file and the
buffer-size parser.

Written on llama-cpp-python's low-level API rather than ``llama_cpp.Llama`` because:
- ``Llama(verbose=False)`` sends stderr to /dev/null while loading, hiding abort messages;
- ``Llama`` has no load-progress hook, and its token loop copies logits into NumPy per token;
- we need the stop flag checked between tokens and during prompt evaluation.
Sampling uses llama.cpp's native sampler chain; nothing per token but one ``llama_decode``, one
``llama_sampler_sample`` and one ``llama_token_to_piece`` crosses into C.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import faulthandler
import os
import signal
import sys
import time
from collections import deque
from typing import Any

import numpy as np

from launcher.engine import protocol
from launcher.engine.events import KV_TYPES, PLAIN_COMPLETION, EngineParams, Sampling
from launcher.engine.logparse import load_failure_message, parse_buffers
from launcher.engine.templates import TemplateError
from launcher.engine.toolcalls import (
    ParsedCall,
    PromptPlan,
    ReplyParser,
    partial_suffix,
    plan_prompt,
    schema_grammar,
)
from launcher.hardware.cpufeatures import decide_extra_buffers, read_cpu_flags

GGUF_TEMPLATE = "gguf chat template"
RAW_PROMPT = "raw prompt (plain completion)"
TRANSCRIPT_STOPS = ("\nUser:", "\nAssistant:")
#: Test hook: ``SPARK_LAUNCHER_TEST_FAULT=segv-on-decode-with-extra-buffers`` makes the host
#: die by a real SIGSEGV at its first prompt decode when extra buffer types are on: the way
#: llama.cpp's AMX kernels crash (issue 20824), reproducible on any CPU, so the crash
#: diagnosis and the safe-settings reload are tested end to end. Read once at host start.
FAULT_ENV = "SPARK_LAUNCHER_TEST_FAULT"
SEGV_WITH_EXTRA_BUFFERS = "segv-on-decode-with-extra-buffers"
_fault = ""

#: Streamed text is batched to at most one message per this many seconds (20 a second, as
#: smooth as a chat pane can show); a model slower than that still sends every token.
FLUSH_S = 0.05


class _LogCapture:
    """llama.cpp's log callback: whole lines into a ring buffer and the host's log file."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=400)
        self.partial = ""
        self.load_lines: list[str] | None = None  # collects every line while loading

    def __call__(self, level: int, text: bytes | None, user_data: Any) -> None:
        if not text:
            return
        s = text.decode("utf-8", errors="replace")
        with contextlib.suppress(OSError):
            os.write(2, s.encode("utf-8"))
        s = self.partial + s
        *done, self.partial = s.split("\n")
        for line in done:
            self.lines.append(line)
            if self.load_lines is not None:
                self.load_lines.append(line)

    def tail(self, n: int = 40) -> list[str]:
        out = list(self.lines)[-n:]
        if self.partial:
            out.append(self.partial)
        return out


class _Host:
    """State of one host: the llama.cpp model, context, sampler scratch and KV bookkeeping."""

    def __init__(self, conn: Any, cancel: Any) -> None:
        import llama_cpp

        self.llama = llama_cpp
        self.conn = conn
        self.cancel = cancel
        self.log = _LogCapture()
        # Keep the ctypes callback alive for the process lifetime.
        self._log_cb = llama_cpp.llama_log_callback(self.log)
        llama_cpp.llama_log_set(self._log_cb, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        self.model: Any = None
        self.ctx: Any = None
        self.vocab: Any = None
        self.n_ctx = 0
        self.n_batch = 512
        self.n_ubatch = 512
        self.template: str | None = None
        self.bos_text = ""
        self.eos_text = ""
        self.cached: list[int] = []  # tokens whose KV is in the cache (sequence 0)
        self.n_swa = 0  # sliding window of the model (0: none, or a full-size SWA cache)
        self.extra_buffers = True
        self._piece = ctypes.create_string_buffer(256)
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: bool(cancel.is_set()))
        self._no_abort = llama_cpp.ggml_abort_callback()  # NULL: no callback

    def send(self, msg_type: str, **fields: Any) -> None:
        self.conn.send_bytes(protocol.encode(msg_type, **fields))

    # ------------------------------------------------------------------ load
    def load(self, path: str, params: EngineParams) -> None:
        llama = self.llama
        self.log.load_lines = []
        t0 = time.perf_counter()
        if not os.path.isfile(path):
            self.send("load_failed", message=f"There is no model file at {path}.", log=[])
            return
        mp = llama.llama_model_default_params()
        mp.n_gpu_layers = 0x7FFFFFFF if params.n_gpu_layers < 0 else params.n_gpu_layers
        mp.main_gpu = params.main_gpu
        if params.use_mmap:
            mp.load_mode = (
                llama.LLAMA_LOAD_MODE_MMAP_MLOCK if params.use_mlock else llama.LLAMA_LOAD_MODE_MMAP
            )
        else:
            mp.load_mode = llama.LLAMA_LOAD_MODE_MLOCK if params.use_mlock else 0
        last = [-1.0]

        def progress(fraction: float, _ud: Any) -> bool:
            if fraction - last[0] >= 0.02 or fraction >= 1.0:
                last[0] = fraction
                with contextlib.suppress(OSError):
                    self.send("progress", fraction=float(fraction))
            return not self.cancel.is_set()

        progress_cb = llama.llama_progress_callback(progress)
        mp.progress_callback = progress_cb
        split = None
        if params.rpc_servers:
            from launcher.errors import RpcError
            from launcher.rpc import register_servers

            try:  # llama.cpp then offloads to these devices first, like llama-server --rpc
                register_servers(params.rpc_servers.split(","))
            except RpcError as exc:
                self.log.load_lines = None
                self.send("load_failed", message=str(exc), log=[])
                return
        if params.tensor_split:
            split = (ctypes.c_float * llama.llama_max_devices())(*params.tensor_split)
            mp.tensor_split = split
        system_info = llama.llama_print_system_info().decode("utf-8", errors="replace")
        extra = decide_extra_buffers(params.use_extra_bufts, system_info, read_cpu_flags())
        mp.use_extra_bufts = extra.use
        self.extra_buffers = extra.use
        # Sent before the load so that a crash while loading can still be diagnosed.
        self.send("system", system_info=system_info, extra_buffers=extra.use, reason=extra.reason)
        model = llama.llama_model_load_from_file(path.encode("utf-8"), mp)
        if not model:
            lines = self.log.load_lines or []
            self.log.load_lines = None
            self.send("load_failed", message=load_failure_message(path, lines), log=lines[-40:])
            return
        cp = llama.llama_context_default_params()
        cp.n_ctx = params.n_ctx
        cp.n_batch = params.n_batch
        cp.n_ubatch = min(params.n_ubatch, params.n_batch)
        cp.n_seq_max = 1
        cp.n_threads = params.n_threads or 1
        cp.n_threads_batch = params.n_threads_batch or cp.n_threads
        cp.flash_attn_type = (
            llama.LLAMA_FLASH_ATTN_TYPE_AUTO
            if params.flash_attn is None
            else (
                llama.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if params.flash_attn
                else llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        )
        cp.type_k = KV_TYPES[params.type_k]
        cp.type_v = KV_TYPES[params.type_v]
        cp.swa_full = params.swa_full
        cp.offload_kqv = params.offload_kqv
        cp.no_perf = True
        ctx = llama.llama_init_from_model(model, cp)
        if not ctx:
            llama.llama_model_free(model)
            lines = self.log.load_lines or []
            self.log.load_lines = None
            self.send("load_failed", message=load_failure_message(path, lines), log=lines[-40:])
            return
        load_s = time.perf_counter() - t0
        lines = self.log.load_lines or []
        self.log.load_lines = None
        self.model, self.ctx = model, ctx
        self.vocab = llama.llama_model_get_vocab(model)
        self.n_ctx = llama.llama_n_ctx(ctx)
        self.n_batch = params.n_batch
        self.n_ubatch = min(params.n_ubatch, params.n_batch)
        raw_template = llama.llama_model_chat_template(model, None)
        self.template = raw_template.decode("utf-8", errors="replace") if raw_template else None
        self.bos_text = self._token_text(llama.llama_vocab_bos(self.vocab))
        self.eos_text = self._token_text(llama.llama_vocab_eos(self.vocab))
        self.n_swa = 0 if params.swa_full else int(llama.llama_model_n_swa(model))
        self.cached = []
        desc = ctypes.create_string_buffer(256)
        llama.llama_model_desc(model, desc, 256)
        self.send(
            "loaded",
            n_ctx=int(self.n_ctx),
            n_ctx_train=int(llama.llama_model_n_ctx_train(model)),
            n_params=int(llama.llama_model_n_params(model)),
            model_size_bytes=int(llama.llama_model_size(model)),
            description=desc.value.decode("utf-8", errors="replace"),
            chat_template=self.template,
            load_s=load_s,
            buffers=[
                {"device": b.device, "kind": b.kind, "bytes": b.bytes} for b in parse_buffers(lines)
            ],
            system_info=system_info,
            extra_buffers=extra.use,
            extra_buffers_reason=extra.reason,
        )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        n = self.llama.llama_token_to_piece(self.vocab, token, self._piece, 256, 0, True)
        return self._piece.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def free(self) -> None:
        if self.ctx:
            self.llama.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.llama.llama_model_free(self.model)
            self.model = None

    # ------------------------------------------------------------------ prompts
    def _tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (self.llama.llama_token * cap)()
        n = self.llama.llama_tokenize(
            self.vocab, data, len(data), buf, cap, add_special, parse_special
        )
        if n < 0:
            cap = -n
            buf = (self.llama.llama_token * cap)()
            n = self.llama.llama_tokenize(
                self.vocab, data, len(data), buf, cap, add_special, parse_special
            )
        return list(buf[:n])

    def chat_prompt(
        self, messages: list[dict[str, Any]], sampling: Sampling | None = None
    ) -> tuple[list[int], str, list[str], PromptPlan]:
        """Tokens, template label, stop strings and the prompt plan (tools, grammar, reply
        parsing) for a conversation."""
        s = sampling or Sampling()
        plan = plan_prompt(
            self.template,
            messages,
            tools=s.tools,
            tool_choice=s.tool_choice,
            parallel_tool_calls=s.parallel_tool_calls,
            json_schema=s.json_schema,
            grammar=s.grammar,
            template_kwargs=s.template_kwargs,
            bos_token=self.bos_text,
            eos_token=self.eos_text,
        )
        if plan.text is not None:
            tokens = self._tokenize(plan.text, add_special=False, parse_special=True)
            return tokens, GGUF_TEMPLATE, [], plan
        return (
            self._tokenize(transcript(plan.messages), add_special=True, parse_special=False),
            PLAIN_COMPLETION,
            list(TRANSCRIPT_STOPS),
            plan,
        )

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        tokens: list[int],
        sampling: Sampling,
        template: str,
        stops: list[str],
        plan: PromptPlan | None = None,
    ) -> None:
        llama = self.llama
        t_start = time.perf_counter()
        stops = [s for s in (*sampling.stop, *stops) if s]
        if not tokens:
            self.send("error", message="The prompt is empty: type a message first.")
            return
        if len(tokens) >= self.n_ctx:
            self.send(
                "error",
                message=f"The conversation ({len(tokens)} tokens) does not fit in the context "
                f"({self.n_ctx} tokens). Start a new chat, or load the model with a larger "
                "context.",
            )
            return
        mem = llama.llama_get_memory(self.ctx)
        # Reuse the KV of the common prefix with the previous request (follow-up turns).
        keep = 0
        limit = min(len(self.cached), len(tokens) - 1) if sampling.cache_prompt else 0
        while keep < limit and self.cached[keep] == tokens[keep]:
            keep += 1
        if keep > 0 and self.n_swa > 0:
            # Sliding-window caches drop old cells: the kept prefix is usable only if the last
            # window before it is still cached (the same rule as llama-server).
            pos_min = llama.llama_memory_seq_pos_min(mem, 0)
            if pos_min > max(0, keep - self.n_swa):
                keep = 0
        if keep == 0 or not llama.llama_memory_seq_rm(mem, 0, keep, -1):
            llama.llama_memory_clear(mem, True)
            keep = 0
        self.cached = tokens[:keep]
        todo = tokens[keep:]
        stop_reason = "eos"
        cancelled = False
        evaluated = 0
        if _fault == SEGV_WITH_EXTRA_BUFFERS and self.extra_buffers:
            os.kill(os.getpid(), signal.SIGSEGV)
        # While the prompt is evaluated, llama.cpp polls the stop flag between graph nodes
        # (abort callback; CPU backend only, elsewhere the n_batch chunks bound the wait).
        # It is off while decoding: a Python call per graph node would cost a few percent.
        llama.llama_set_abort_callback(self.ctx, self._abort_cb, None)
        try:
            for i in range(0, len(todo), self.n_batch):
                if self.cancel.is_set():
                    cancelled = True
                    break
                chunk = todo[i : i + self.n_batch]
                arr = (llama.llama_token * len(chunk))(*chunk)
                rc = llama.llama_decode(self.ctx, llama.llama_batch_get_one(arr, len(chunk)))
                if rc == 2 and self.cancel.is_set():  # aborted mid-chunk by the stop flag
                    llama.llama_memory_clear(mem, True)
                    self.cached = []
                    cancelled = True
                    break
                if rc != 0:
                    llama.llama_memory_clear(mem, True)
                    self.cached = []
                    self.send(
                        "error",
                        message=f"llama.cpp could not evaluate the prompt (code {rc}). "
                        "Start a new chat or reload the model with a larger context.",
                    )
                    return
                self.cached.extend(chunk)
                evaluated += len(chunk)
        finally:
            llama.llama_set_abort_callback(self.ctx, self._no_abort, None)
        t_prefilled = time.perf_counter()
        prefill_s = t_prefilled - t_start
        generated = 0
        stop_sequence: str | None = None
        reasoning_tokens = 0
        decode_llama_s = 0.0  # time inside llama_decode between the first and last token
        text_parts: list[str] = []
        reasoning_parts: list[str] = []
        calls: list[ParsedCall] = []
        all_logprobs: list[list[Any]] = []
        t_first = t_last = t_prefilled
        parser = (
            ReplyParser(plan.family, plan.tools, plan.in_reasoning, plan.generic)
            if plan is not None
            else None
        )
        grammar = plan.grammar if plan is not None else (
            schema_grammar(sampling.json_schema) if sampling.json_schema is not None
            else sampling.grammar
        )  # fmt: skip
        preserved = self._preserved_ids(plan.family.preserved if plan is not None else ())
        if cancelled:
            stop_reason = "cancelled"
        else:
            grammar_smpl = None
            triggers = plan.grammar_triggers if plan is not None else ()
            if grammar and triggers:
                # "auto": the call grammar wakes up on the family's opener, and only where the
                # opener is one token of this vocabulary (Qwen's <tool_call>, [TOOL_CALLS]...):
                # a text pattern can match inside a token whose rest the grammar rejects,
                # which makes llama.cpp abort. Elsewhere the reply is parsed unconstrained.
                ids = sorted(self._preserved_ids(tuple(triggers)))
                if ids:
                    arr = (llama.llama_token * len(ids))(*ids)
                    no_patterns = (ctypes.c_char_p * 1)()
                    grammar_smpl = llama.llama_sampler_init_grammar_lazy_patterns(
                        self.vocab, grammar.encode("utf-8"), b"root", no_patterns, 0, arr, len(ids)
                    )
                else:
                    grammar = None
            elif grammar:
                grammar_smpl = llama.llama_sampler_init_grammar(
                    self.vocab, grammar.encode("utf-8"), b"root"
                )
            if grammar and not grammar_smpl:
                self.send("error", message="llama.cpp could not parse this request's grammar.")
                return
            chain = self._sampler(sampling)
            try:
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                pending = ""
                tok_arr = (llama.llama_token * 1)()
                batch = llama.llama_batch_get_one(tok_arr, 1)
                piece = self._piece
                greedy = sampling.temperature <= 0 and not self._needs_chain(sampling)
                n_vocab = llama.llama_vocab_n_tokens(self.vocab)
                picker = _GrammarPicker(llama, self.ctx, n_vocab, chain, grammar_smpl, greedy)
                unsent: list[str] = []
                unsent_reasoning: list[str] = []
                unsent_lp: list[list[Any]] = []
                lp_queue: deque[tuple[int, list[Any]]] = deque()
                emitted_chars = 0  # characters past the stop-string check
                call_s = 0.0  # the last llama_decode, counted once its token is
                t_flushed = -FLUSH_S  # the first text is sent at once

                def route(pieces: list[tuple[str, str]]) -> None:
                    for kind, text in pieces:
                        if kind == "reasoning":
                            reasoning_parts.append(text)
                            unsent_reasoning.append(text)
                        else:
                            text_parts.append(text)
                            unsent.append(text)

                def flush() -> None:
                    if unsent_reasoning:
                        self.send("reasoning", text="".join(unsent_reasoning))
                        unsent_reasoning.clear()
                    if unsent or unsent_lp:
                        self.send("token", text="".join(unsent), logprobs=list(unsent_lp))
                        unsent.clear()
                        unsent_lp.clear()

                while True:
                    if self.cancel.is_set():
                        stop_reason = "cancelled"
                        break
                    if grammar_smpl is not None:
                        tok = picker.pick()
                    elif greedy:
                        # Argmax over a zero-copy view of llama.cpp's logits: the sampler chain
                        # would first build a candidate array over the whole vocabulary
                        # (262k entries for Gemma), a measurable share of a small model's step.
                        logits = np.ctypeslib.as_array(
                            llama.llama_get_logits_ith(self.ctx, -1), shape=(n_vocab,)
                        )
                        tok = int(logits.argmax())
                    else:
                        tok = llama.llama_sampler_sample(chain, self.ctx, -1)
                    if llama.llama_vocab_is_eog(self.vocab, tok):
                        stop_reason = "eos"
                        break
                    generated += 1
                    t_last = time.perf_counter()
                    if generated == 1:
                        t_first = t_last
                    else:
                        decode_llama_s += call_s
                    n = llama.llama_token_to_piece(self.vocab, tok, piece, 256, 0, tok in preserved)
                    pending += decoder.decode(piece.raw[: max(n, 0)])
                    if sampling.logprobs is not None:
                        # Held until the text it made is emitted: a stop string's tokens never
                        # get one (one entry per token of the returned text).
                        entry = self._logprob(tok, sampling.logprobs, n_vocab)
                        lp_queue.append((emitted_chars + len(pending), entry))
                    emit, pending, hit = _split_stop(pending, stops)
                    emitted_chars += len(emit)
                    while lp_queue and lp_queue[0][0] <= emitted_chars:
                        released = lp_queue.popleft()[1]
                        unsent_lp.append(released)
                        all_logprobs.append(released)
                    if self.cancel.is_set():
                        stop_reason = "cancelled"
                        break
                    if parser is not None and parser.state == "reasoning":
                        reasoning_tokens += 1
                    if emit:
                        route(parser.feed(emit) if parser is not None else [("content", emit)])
                        # The first text goes at once (time to first token); after that at
                        # most one message per FLUSH_S: each message wakes the client, which
                        # costs the decode loop ~0.1 ms and competes with llama.cpp's threads.
                        if t_last - t_flushed >= FLUSH_S and (unsent or unsent_reasoning):
                            flush()
                            t_flushed = t_last
                    if hit is not None:
                        stop_reason, stop_sequence = "stop", hit
                        pending = ""
                        break
                    if generated >= sampling.max_tokens:
                        stop_reason = "length"
                        break
                    if len(self.cached) + 1 >= self.n_ctx:
                        stop_reason = "context_full"
                        break
                    tok_arr[0] = tok
                    t_call = time.perf_counter()
                    rc = llama.llama_decode(self.ctx, batch)
                    call_s = time.perf_counter() - t_call
                    if rc != 0:
                        stop_reason = "context_full"
                        break
                    self.cached.append(tok)
                if pending and stop_reason not in ("cancelled",):
                    route(parser.feed(pending) if parser is not None else [("content", pending)])
                    emitted_chars += len(pending)
                while lp_queue and lp_queue[0][0] <= emitted_chars:
                    released = lp_queue.popleft()[1]
                    unsent_lp.append(released)
                    all_logprobs.append(released)
                if parser is not None:
                    held, calls, _error = parser.finish()
                    route(held)  # a call that did not parse is kept as text, never lost
                    if stop_reason == "cancelled":
                        calls = []
                flush()  # what was generated before the stop goes out before "finished"
            finally:
                llama.llama_sampler_free(chain)
                if grammar_smpl is not None:
                    llama.llama_sampler_free(grammar_smpl)
        for i, call in enumerate(calls):
            self.send("tool_call", index=i, id=call.id, name=call.name, arguments=call.arguments)
        if calls and stop_reason in ("eos", "stop"):
            stop_reason = "tool_calls"
        decode_s = t_last - t_first
        self.send(
            "finished",
            text="".join(text_parts),
            tool_calls=[
                {"index": i, "id": c.id, "name": c.name, "arguments": c.arguments}
                for i, c in enumerate(calls)
            ],
            reasoning="".join(reasoning_parts),
            logprobs=all_logprobs,
            metrics={
                "prompt_tokens": evaluated,
                "prefill_s": prefill_s,
                "prefill_tokens_per_s": evaluated / prefill_s if prefill_s > 0 else 0.0,
                "generated_tokens": generated,
                "decode_s": decode_s,
                "decode_tokens_per_s": (generated - 1) / decode_s if generated > 1 else 0.0,
                "decode_llama_s": decode_llama_s,
                "stop_reason": stop_reason,
                "template": template,
                "total_s": time.perf_counter() - t_start,
                "cached_tokens": keep,
                "reasoning_tokens": reasoning_tokens,
                "stop_sequence": stop_sequence,
            },
        )

    @staticmethod
    def _needs_chain(s: Sampling) -> bool:
        """Whether greedy decoding must go through the sampler chain (penalties and biases
        change the logits)."""
        return bool(
            s.repeat_penalty != 1.0 or s.frequency_penalty or s.presence_penalty or s.logit_bias
        )

    def _sampler(self, s: Sampling) -> Any:
        """llama.cpp's own sampler chain: penalties, logit bias, then the choice (a grammar is
        a separate sampler, see ``_GrammarPicker``)."""
        llama = self.llama
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        n_vocab = llama.llama_vocab_n_tokens(self.vocab)
        if s.repeat_penalty != 1.0 or s.frequency_penalty or s.presence_penalty:
            llama.llama_sampler_chain_add(
                chain,
                llama.llama_sampler_init_penalties(
                    n_vocab,
                    s.repeat_last_n,
                    s.repeat_penalty,
                    s.frequency_penalty,
                    s.presence_penalty,
                ),
            )
        if s.logit_bias:
            biases = (llama.llama_logit_bias * len(s.logit_bias))()
            for i, (token, bias) in enumerate(s.logit_bias):
                biases[i].token, biases[i].bias = int(token), float(bias)
            llama.llama_sampler_chain_add(
                chain, llama.llama_sampler_init_logit_bias(n_vocab, len(s.logit_bias), biases)
            )
        if s.temperature <= 0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
            return chain
        if s.top_k > 0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(s.top_k))
        if 0 < s.top_p < 1:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(s.top_p, 1))
        if s.min_p > 0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_min_p(s.min_p, 1))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(s.temperature))
        seed = 0xFFFFFFFF if s.seed is None else s.seed & 0xFFFFFFFF
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed))
        return chain

    def _preserved_ids(self, texts: tuple[str, ...]) -> frozenset[int]:
        """Token ids of the markup a family's parser reads (special tokens llama.cpp would
        otherwise render as nothing), as llama-server's "preserved tokens"."""
        ids = set()
        for text in texts:
            toks = self._tokenize(text, add_special=False, parse_special=True)
            if len(toks) == 1:
                ids.add(toks[0])
        return frozenset(ids)

    def _logprob(self, tok: int, top_n: int, n_vocab: int) -> list[Any]:
        """[token text, log-probability, [[alternative, log-probability], ...]] from the raw
        logits the token was chosen from."""
        logits = np.ctypeslib.as_array(
            self.llama.llama_get_logits_ith(self.ctx, -1), shape=(n_vocab,)
        )
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum()))
        top: list[list[Any]] = []
        if top_n > 0:
            k = min(top_n, n_vocab)
            idx = np.argpartition(-logits, k - 1)[:k]
            idx = idx[np.argsort(-logits[idx])]
            top = [[self._token_text(int(i)), float(logits[i]) - log_total] for i in idx]
        return [self._token_text(tok), float(logits[tok]) - log_total, top]

    # ------------------------------------------------------------------ embeddings
    def embed(self, texts: list[str]) -> None:
        """One L2-normalised vector per text: the model's own pooling when its GGUF sets one
        (embedding models), else the mean of the last layer's token embeddings."""
        llama = self.llama
        mem = llama.llama_get_memory(self.ctx)
        n_embd = int(
            llama.llama_model_n_embd_out(self.model) or llama.llama_model_n_embd(self.model)
        )
        pooled = llama.llama_pooling_type(self.ctx) != llama.LLAMA_POOLING_TYPE_NONE
        limit = min(self.n_ctx, self.n_batch, self.n_ubatch)
        encoded = [self._tokenize(t, add_special=True, parse_special=False) for t in texts]
        for i, toks in enumerate(encoded):
            if not texts[i] or not toks:
                self.send("error", message=f"Input {i} is empty: nothing to embed.")
                return
            if len(toks) > limit:
                self.send(
                    "error",
                    message=f"Input {i} has {len(toks)} tokens; this model embeds at most "
                    f"{limit} tokens at once (its batch size). Split the text.",
                )
                return
        vectors: list[list[float]] = []
        llama.llama_set_embeddings(self.ctx, True)
        try:
            for toks in encoded:
                llama.llama_memory_clear(mem, True)
                batch = llama.llama_batch_init(len(toks), 0, 1)
                try:
                    for j, tok in enumerate(toks):
                        batch.token[j], batch.pos[j] = tok, j
                        batch.n_seq_id[j], batch.logits[j] = 1, True
                        batch.seq_id[j][0] = 0
                    batch.n_tokens = len(toks)
                    if llama.llama_decode(self.ctx, batch) != 0:
                        self.send("error", message="llama.cpp could not embed this input.")
                        return
                    if pooled:
                        ptr = llama.llama_get_embeddings_seq(self.ctx, 0)
                        vec = np.ctypeslib.as_array(ptr, shape=(n_embd,)).astype(np.float64)
                    else:
                        rows = [
                            np.ctypeslib.as_array(
                                llama.llama_get_embeddings_ith(self.ctx, j), shape=(n_embd,)
                            )
                            for j in range(len(toks))
                        ]
                        vec = np.mean(np.stack(rows), axis=0, dtype=np.float64)
                finally:
                    llama.llama_batch_free(batch)
                norm = float(np.linalg.norm(vec))
                vectors.append([float(x) for x in (vec / norm if norm > 0 else vec)])
        finally:
            llama.llama_set_embeddings(self.ctx, False)
            llama.llama_memory_clear(mem, True)
            self.cached = []  # the chat's cached prefix was cleared
        self.send("embeddings", vectors=vectors, prompt_tokens=sum(len(t) for t in encoded))

    # ------------------------------------------------------------------ loop
    def serve(self) -> None:
        while True:
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                return  # the app went away
            msg = protocol.decode(data)
            kind = msg["type"]
            if kind == "shutdown":
                return
            if kind == "load":
                if self.model:
                    self.send("load_failed", message="A model is already loaded here.", log=[])
                    continue
                try:
                    params = EngineParams.from_dict(msg["params"])
                except (TypeError, ValueError) as exc:
                    self.send("load_failed", message=f"Invalid load settings: {exc}", log=[])
                    continue
                self.load(msg["path"], params)
            elif kind == "embed":
                if not self.model:
                    self.send("error", message="No model is loaded: load a model first.")
                    continue
                self.embed([str(t) for t in msg["texts"]])
            elif kind == "generate":
                if not self.model:
                    self.send("error", message="No model is loaded: load a model first.")
                    continue
                self._generate_request(msg)

    def _generate_request(self, msg: dict[str, Any]) -> None:
        try:
            sampling = Sampling.from_dict(msg["sampling"])
        except (TypeError, ValueError) as exc:
            self.send("error", message=f"Invalid sampling settings: {exc}")
            return
        plan: PromptPlan | None = None
        if msg["mode"] == "chat":
            messages = msg["messages"] or []
            problem = _message_problem(messages)
            if problem:
                self.send("error", message=problem)
                return
            try:
                tokens, template, stops, plan = self.chat_prompt(messages, sampling)
            except (TemplateError, ValueError) as exc:  # the GGUF's template raised, or the
                self.send("error", message=f"The request cannot be put to this model: {exc}")
                return  # request contradicts itself (a named tool that is not given...)
        else:
            tokens = self._tokenize(msg["prompt"] or "", add_special=True, parse_special=False)
            template, stops = RAW_PROMPT, []
        self.generate(tokens, sampling, template, stops, plan)


ROLES = ("system", "user", "assistant", "tool")


def _message_problem(messages: list[Any]) -> str | None:
    """Why these messages cannot be rendered, or None: each has a known role and text
    content (or, for an assistant, tool calls instead)."""
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return "Messages need a 'role' (system, user, assistant or tool)."
        content = m.get("content")
        calls = m.get("tool_calls")
        if calls is not None and not (
            isinstance(calls, list)
            and all(
                isinstance(c, dict)
                and isinstance(c.get("function"), dict)
                and isinstance(c["function"].get("name"), str)
                for c in calls
            )
        ):
            return "An assistant's 'tool_calls' must be OpenAI function calls."
        if not isinstance(content, str) and not (content is None and calls):
            return "Messages need a 'role' and a text 'content'."
    return None


class _GrammarPicker:
    """Token choice under a grammar, the way llama-server does it (``common/sampling.cpp``):
    choose as if unconstrained, let the grammar check that one token, and only when it is
    rejected filter the whole vocabulary through the grammar and choose again. Filtering
    262k candidates costs ~0.1 s a token on Gemma; checking one costs nothing, and a model
    that follows the format is rarely corrected. Both samplers then accept the token."""

    _DTYPE = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

    def __init__(
        self, llama: Any, ctx: Any, n_vocab: int, chain: Any, grammar: Any, greedy: bool
    ) -> None:
        self.llama, self.ctx, self.n_vocab = llama, ctx, n_vocab
        self.chain, self.grammar, self.greedy = chain, grammar, greedy
        self.cand = np.zeros(n_vocab, dtype=self._DTYPE)
        self.one = np.zeros(1, dtype=self._DTYPE)

    def _array(self, buf: np.ndarray) -> Any:
        ptr = buf.ctypes.data_as(self.llama.llama_token_data_p)
        return self.llama.llama_token_data_array(ptr, len(buf), -1, False)

    def _choose(self, logits: np.ndarray, constrained: bool) -> int:
        cand = self.cand
        cand["id"] = np.arange(self.n_vocab, dtype=np.int32)
        cand["logit"] = logits
        cand["p"] = 0.0
        arr = self._array(cand)
        if constrained:
            self.llama.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        self.llama.llama_sampler_apply(self.chain, ctypes.byref(arr))
        return int(cand["id"][arr.selected])

    def pick(self) -> int:
        llama = self.llama
        logits = np.ctypeslib.as_array(
            llama.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)
        )
        tok = int(logits.argmax()) if self.greedy else self._choose(logits, False)
        self.one["id"], self.one["logit"], self.one["p"] = tok, 1.0, 0.0
        llama.llama_sampler_apply(self.grammar, ctypes.byref(self._array(self.one)))
        if not np.isfinite(self.one["logit"][0]):
            tok = self._choose(logits, True)
        llama.llama_sampler_accept(self.grammar, tok)
        llama.llama_sampler_accept(self.chain, tok)
        return tok


def transcript(messages: list[dict[str, str]]) -> str:
    """A plain transcript for models without a chat template; the model completes the reply."""
    parts: list[str] = []
    for m in messages:
        role, content = m["role"], m["content"].strip()
        if role == "system":
            parts.append(f"{content}\n\n")
        elif role == "assistant":
            parts.append(f"Assistant: {content}\n")
        else:
            parts.append(f"User: {content}\n")
    parts.append("Assistant:")
    return "".join(parts)


def _split_stop(pending: str, stops: list[str]) -> tuple[str, str, str | None]:
    """Split ``pending`` into (text safe to emit, text held back, the stop string found).

    Text that could be the start of a stop string is held back until it can be decided.
    """
    if not stops:
        return pending, "", None
    first, found = -1, None
    for s in stops:
        i = pending.find(s)
        if i >= 0 and (first < 0 or i < first):
            first, found = i, s
    if found is not None:
        return pending[:first], "", found
    hold = partial_suffix(pending, stops)
    return pending[: len(pending) - hold], pending[len(pending) - hold :], None


def _inject_fault_for_tests() -> None:
    global _fault
    _fault = os.environ.get(FAULT_ENV, "")


def host_main(conn: Any, cancel: Any, log_path: str) -> None:
    """Entry point of the host process (``multiprocessing`` spawn target)."""
    # Ctrl-C in a terminal reaches the whole process group: the app decides what it means
    # (cancel a reply, quit), so the host ignores it. The app ends the host explicitly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for std in (1, 2):  # C-level writes (llama.cpp aborts) land in the log file too
        with contextlib.suppress(OSError):
            os.dup2(fd, std)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    # A fatal signal (SIGSEGV in a llama.cpp kernel) writes the Python stack to the log, so
    # the crash classifier and the user see which call died (llama_decode, model load...).
    faulthandler.enable(file=sys.stderr, all_threads=False)
    _inject_fault_for_tests()
    host = _Host(conn, cancel)
    try:
        host.serve()
    finally:
        host.free()
        with contextlib.suppress(OSError):
            conn.close()
