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
import select
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
#: A request goes to the slot whose cache shares a prefix with it when that prefix is at
#: least 1/SLOT_SIMILARITY of the prompt (llama-server's ``--slot-prompt-similarity`` 0.1).
SLOT_SIMILARITY = 10


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
        self.n_parallel = 1  # slots: sequences decoded together, each with n_ctx_slot cells
        self.n_ctx_slot = 0
        self.n_vocab = 0
        self.slots: list[_Slot] = []
        self.active: list[_Seq] = []  # requests in a slot (reading their prompt, generating)
        self.waiting: deque[_Seq] = deque()  # requests waiting for a free slot
        self.pending_embed: list[str] | None = None  # runs once nothing is generating
        self.n_swa = 0  # sliding window of the model (0: none, or a full-size SWA cache)
        self.extra_buffers = True
        self._piece = ctypes.create_string_buffer(256)
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: bool(cancel.is_set()))
        self._no_abort = llama_cpp.ggml_abort_callback()  # NULL: no callback
        self._abort_on = False
        self._batch: Any = None

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
        # Slots as llama-server's --parallel: one sequence each, the context split between
        # them (kv_unified off: every slot has its own n_ctx / n_parallel cells, so the KV
        # cache takes the same memory as one slot with the whole context).
        cp.n_seq_max = params.n_parallel
        cp.kv_unified = False
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
        self.n_parallel = params.n_parallel
        self.n_ctx_slot = int(llama.llama_n_ctx_seq(ctx)) or self.n_ctx // self.n_parallel
        self.n_vocab = int(llama.llama_vocab_n_tokens(self.vocab))
        self.slots = [_Slot(i) for i in range(self.n_parallel)]
        self._init_batch(max(self.n_batch, self.n_parallel))
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
            n_parallel=self.n_parallel,
            n_ctx_slot=self.n_ctx_slot,
        )

    def _init_batch(self, cap: int) -> None:
        """One ``llama_batch`` for the host's life, over NumPy arrays: a step fills it with
        slices (a prompt chunk is one assignment per field, not one ctypes call a token)."""
        llama = self.llama
        self._b_tok = np.zeros(cap, dtype=np.int32)
        self._b_pos = np.zeros(cap, dtype=np.int32)
        self._b_nseq = np.ones(cap, dtype=np.int32)
        self._b_seq = np.zeros(cap, dtype=np.int32)
        self._b_logits = np.zeros(cap, dtype=np.int8)
        int_p = ctypes.POINTER(ctypes.c_int32)
        base = self._b_seq.ctypes.data
        self._b_seq_ptrs = (int_p * cap)(*[ctypes.cast(base + 4 * i, int_p) for i in range(cap)])
        batch = llama.llama_batch()
        batch.n_tokens = 0
        batch.token = self._b_tok.ctypes.data_as(ctypes.POINTER(llama.llama_token))
        batch.pos = self._b_pos.ctypes.data_as(ctypes.POINTER(llama.llama_pos))
        batch.n_seq_id = self._b_nseq.ctypes.data_as(int_p)
        batch.seq_id = ctypes.cast(
            self._b_seq_ptrs, ctypes.POINTER(ctypes.POINTER(llama.llama_seq_id))
        )
        batch.logits = self._b_logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self._batch = batch

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
    def _prepare(self, msg: dict[str, Any], t_arrived: float) -> _Seq | None:
        """A request as a sequence ready for a slot (its prompt tokenized), or None after
        sending the reason it cannot run."""
        rid = int(msg.get("rid") or 0)
        try:
            sampling = Sampling.from_dict(msg["sampling"])
        except (TypeError, ValueError) as exc:
            self.send("error", rid=rid, message=f"Invalid sampling settings: {exc}")
            return None
        plan: PromptPlan | None = None
        if msg["mode"] == "chat":
            messages = msg["messages"] or []
            problem = _message_problem(messages)
            if problem:
                self.send("error", rid=rid, message=problem)
                return None
            try:
                tokens, template, stops, plan = self.chat_prompt(messages, sampling)
            except (TemplateError, ValueError) as exc:  # the GGUF's template raised, or the
                self.send(  # request contradicts itself (a named tool that is not given...)
                    "error", rid=rid, message=f"The request cannot be put to this model: {exc}"
                )
                return None
        else:
            tokens = self._tokenize(msg["prompt"] or "", add_special=True, parse_special=False)
            template, stops = RAW_PROMPT, []
        if not tokens:
            self.send("error", rid=rid, message="The prompt is empty: type a message first.")
            return None
        if len(tokens) >= self.n_ctx_slot:
            slots = (
                ""
                if self.n_parallel == 1
                else f" of one of the {self.n_parallel} parallel slots (the {self.n_ctx}-token "
                "context is split between them)"
            )
            self.send(
                "error",
                rid=rid,
                message=f"The conversation ({len(tokens)} tokens) does not fit in the context "
                f"({self.n_ctx_slot} tokens){slots}. Start a new chat, or load the model with a "
                "larger context" + ("." if self.n_parallel == 1 else " or fewer parallel slots."),
            )
            return None
        return _Seq(rid, tokens, sampling, template, stops, plan, t_arrived)

    def _place(self, seq: _Seq) -> bool:
        """Put ``seq`` in a free slot: the one whose cached prompt shares the longest prefix
        with it (a follow-up turn lands where its conversation is), else an empty or the
        least recently used one. Reuses that prefix's KV and builds the samplers. False when
        no slot is free."""
        llama = self.llama
        free = [s for s in self.slots if s.seq is None]
        if not free:
            return False
        tokens = seq.tokens
        reuse = seq.sampling.cache_prompt

        def shared(slot: _Slot) -> int:
            if not reuse:
                return 0
            n, limit = 0, min(len(slot.cached), len(tokens) - 1)
            while n < limit and slot.cached[n] == tokens[n]:
                n += 1
            return n

        def rank(slot: _Slot) -> tuple[int, bool, float, int]:
            # A prefix that is a real part of the prompt (llama-server's similarity 0.1), not
            # just the BOS token; else a slot whose cache holds nothing, else the least
            # recently used (llama-server's choice); the lowest of equals, so that a burst
            # takes neighbouring slots: llama.cpp decodes consecutive slots in one
            # micro-batch (see _step).
            n = shared(slot)
            similar = n if n * SLOT_SIMILARITY >= len(tokens) else 0
            return (similar, not slot.cached, -slot.last_used, -slot.id)

        slot = max(free, key=rank)
        mem = llama.llama_get_memory(self.ctx)
        keep = shared(slot)
        # Sliding-window caches drop old cells: the kept prefix is usable only if the last
        # window before it is still cached (the same rule as llama-server).
        if (
            keep > 0
            and self.n_swa > 0
            and llama.llama_memory_seq_pos_min(mem, slot.id) > max(0, keep - self.n_swa)
        ):
            keep = 0
        if keep == 0 or not llama.llama_memory_seq_rm(mem, slot.id, keep, -1):
            llama.llama_memory_seq_rm(mem, slot.id, -1, -1)
            keep = 0
        slot.cached = tokens[:keep]
        seq.keep = keep
        seq.todo = tokens[keep:]
        seq.t_placed = time.perf_counter()
        if not self._start_sampling(seq):
            return True  # refused (bad grammar): the slot stays free
        slot.seq = seq
        seq.slot = slot
        self.active.append(seq)
        if _fault == SEGV_WITH_EXTRA_BUFFERS and self.extra_buffers:
            os.kill(os.getpid(), signal.SIGSEGV)
        return True

    def _start_sampling(self, seq: _Seq) -> bool:
        """The sequence's sampler chain, grammar and reply parser; False after sending why
        the grammar cannot be used."""
        llama = self.llama
        plan, sampling = seq.plan, seq.sampling
        grammar = plan.grammar if plan is not None else (
            schema_grammar(sampling.json_schema) if sampling.json_schema is not None
            else sampling.grammar
        )  # fmt: skip
        grammar_smpl = None
        triggers = plan.grammar_triggers if plan is not None else ()
        if grammar and triggers:
            # "auto": the call grammar wakes up on the family's opener, and only where the
            # opener is one token of this vocabulary (Qwen's <tool_call>, [TOOL_CALLS]...): a
            # text pattern can match inside a token whose rest the grammar rejects, which
            # makes llama.cpp abort. Elsewhere the reply is parsed unconstrained.
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
            self.send(
                "error", rid=seq.rid, message="llama.cpp could not parse this request's grammar."
            )
            return False
        seq.grammar_smpl = grammar_smpl
        seq.chain = self._sampler(sampling)
        seq.greedy = sampling.temperature <= 0 and not self._needs_chain(sampling)
        if grammar_smpl is not None:
            seq.picker = _GrammarPicker(
                llama, self.ctx, self.n_vocab, seq.chain, grammar_smpl, seq.greedy
            )
        seq.parser = (
            ReplyParser(plan.family, plan.tools, plan.in_reasoning, plan.generic)
            if plan is not None
            else None
        )
        seq.preserved = self._preserved_ids(plan.family.preserved if plan is not None else ())
        return True

    def _step(self) -> None:
        """One ``llama_decode``: the next token of every generating sequence and prompt
        chunks of the ones still reading their prompt (up to ``n_batch`` tokens in all, given
        out in arrival order, so a long prompt never stalls the others for more than one
        chunk); then one token is chosen for every sequence whose logits came out.

        The batch is laid out in slot order: with a KV cache per slot, llama.cpp puts
        sequences in one micro-batch only while their ids follow each other in the batch
        (``split_equal``, sequential), so slot 0, 1, 2... in that order decode together."""
        llama = self.llama
        taken: dict[int, int] = {}  # id(seq) -> prompt tokens it evaluates in this step
        budget = self.n_batch - sum(1 for seq in self.active if seq.next_tok >= 0)
        for seq in self.active:
            if budget <= 0:
                break
            if seq.next_tok < 0 and seq.todo:
                taken[id(seq)] = k = min(budget, len(seq.todo))
                budget -= k
        tok, pos, seq_ids, wants = self._b_tok, self._b_pos, self._b_seq, self._b_logits
        n = 0
        decoding: list[tuple[_Seq, int]] = []  # (sequence, batch index of its logits)
        chunks: list[tuple[_Seq, int, int]] = []  # (sequence, tokens, index of logits or -1)
        for seq in sorted(self.active, key=_slot_id):
            slot = seq.slot
            assert slot is not None
            if seq.next_tok >= 0:
                tok[n], pos[n], seq_ids[n], wants[n] = seq.next_tok, len(slot.cached), slot.id, 1
                decoding.append((seq, n))
                n += 1
            elif id(seq) in taken:
                k = taken[id(seq)]
                start = len(slot.cached)
                tok[n : n + k] = seq.todo[:k]
                pos[n : n + k] = np.arange(start, start + k, dtype=np.int32)
                seq_ids[n : n + k] = slot.id
                wants[n : n + k] = 0
                out = -1
                if k == len(seq.todo):  # the prompt's last token: its logits give the first
                    out = n + k - 1
                    wants[out] = 1
                chunks.append((seq, k, out))
                n += k
        if n == 0:
            return
        self._batch.n_tokens = n
        # While a prompt is evaluated, llama.cpp polls the stop flag between graph nodes
        # (abort callback; CPU backend only, elsewhere the n_batch chunks bound the wait).
        # It is off while only decoding: a Python call per graph node would cost a few %.
        self._set_abort(bool(chunks))
        t_call = time.perf_counter()
        rc = llama.llama_decode(self.ctx, self._batch)
        call_s = time.perf_counter() - t_call
        if rc != 0:
            self._decode_failed(rc, decoding, chunks)
            return
        now = time.perf_counter()
        outputs: list[tuple[_Seq, int]] = []
        for seq, index in decoding:
            assert seq.slot is not None
            seq.slot.cached.append(seq.next_tok)
            seq.call_s = call_s
            outputs.append((seq, index))
        for seq, k, out in chunks:
            assert seq.slot is not None
            seq.slot.cached.extend(seq.todo[:k])
            seq.todo = seq.todo[k:]
            seq.evaluated += k
            if out >= 0:
                seq.t_prefilled = now
                outputs.append((seq, out))
        for seq, index in outputs:
            self._next_token(seq, index)

    def _set_abort(self, on: bool) -> None:
        if on != self._abort_on:
            self.llama.llama_set_abort_callback(
                self.ctx, self._abort_cb if on else self._no_abort, None
            )
            self._abort_on = on

    def _decode_failed(
        self, rc: int, decoding: list[tuple[_Seq, int]], chunks: list[tuple[_Seq, int, int]]
    ) -> None:
        """A batch llama.cpp did not evaluate: the cells it may have written are dropped, so
        every slot's cache again holds exactly its ``cached`` tokens."""
        llama = self.llama
        mem = llama.llama_get_memory(self.ctx)
        for seq in [s for s, _ in decoding] + [s for s, _, _ in chunks]:
            assert seq.slot is not None
            llama.llama_memory_seq_rm(mem, seq.slot.id, len(seq.slot.cached), -1)
        if rc == 2 and self.cancel.is_set():  # aborted mid-batch by the stop flag
            self._cancel_all()
            return
        for seq, _ in decoding:
            seq.next_tok = -1
            self._finish(seq, "context_full")
        for seq, _, _ in chunks:
            slot = seq.slot
            assert slot is not None
            llama.llama_memory_seq_rm(mem, slot.id, -1, -1)
            slot.cached = []
            self._release(seq)
            self.send(
                "error",
                rid=seq.rid,
                message=f"llama.cpp could not evaluate the prompt (code {rc}). "
                "Start a new chat or reload the model with a larger context.",
            )

    def _next_token(self, seq: _Seq, index: int) -> None:
        """Choose ``seq``'s next token from the logits at batch ``index`` and pass its text
        on (stop strings, reply parser, logprobs); finish the reply when it ends."""
        llama = self.llama
        seq.next_tok = -1
        if seq.picker is not None:
            tok = seq.picker.pick(index)
        elif seq.greedy:
            # Argmax over a zero-copy view of llama.cpp's logits: the sampler chain would
            # first build a candidate array over the whole vocabulary (262k entries for
            # Gemma), a measurable share of a small model's step.
            logits = np.ctypeslib.as_array(
                llama.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,)
            )
            tok = int(logits.argmax())
        else:
            tok = llama.llama_sampler_sample(seq.chain, self.ctx, index)
        if llama.llama_vocab_is_eog(self.vocab, tok):
            self._finish(seq, "eos")
            return
        seq.generated += 1
        seq.t_last = time.perf_counter()
        if seq.generated == 1:
            seq.t_first = seq.t_last
        else:
            seq.decode_llama_s += seq.call_s
        piece = self._piece
        n = llama.llama_token_to_piece(self.vocab, tok, piece, 256, 0, tok in seq.preserved)
        seq.pending += seq.decoder.decode(piece.raw[: max(n, 0)])
        sampling = seq.sampling
        if sampling.logprobs is not None:
            # Held until the text it made is emitted: a stop string's tokens never get one
            # (one entry per token of the returned text).
            entry = self._logprob(tok, sampling.logprobs, index)
            seq.lp_queue.append((seq.emitted_chars + len(seq.pending), entry))
        emit, seq.pending, hit = _split_stop(seq.pending, seq.stops)
        seq.emitted_chars += len(emit)
        seq.release_logprobs()
        if seq.parser is not None and seq.parser.state == "reasoning":
            seq.reasoning_tokens += 1
        if emit:
            seq.route(seq.parser.feed(emit) if seq.parser is not None else [("content", emit)])
            # The first text goes at once (time to first token); after that at most one
            # message per FLUSH_S: each message wakes the client, which costs the decode
            # loop ~0.1 ms and competes with llama.cpp's threads.
            if seq.t_last - seq.t_flushed >= FLUSH_S and (seq.unsent or seq.unsent_reasoning):
                self._flush(seq)
                seq.t_flushed = seq.t_last
        if hit is not None:
            seq.stop_sequence = hit
            seq.pending = ""
            self._finish(seq, "stop")
            return
        if seq.generated >= sampling.max_tokens:
            self._finish(seq, "length")
            return
        assert seq.slot is not None
        if len(seq.slot.cached) + 1 >= self.n_ctx_slot:
            self._finish(seq, "context_full")
            return
        seq.next_tok = tok

    def _flush(self, seq: _Seq) -> None:
        if seq.unsent_reasoning:
            self.send("reasoning", rid=seq.rid, text="".join(seq.unsent_reasoning))
            seq.unsent_reasoning.clear()
        if seq.unsent or seq.unsent_lp:
            self.send("token", rid=seq.rid, text="".join(seq.unsent), logprobs=list(seq.unsent_lp))
            seq.unsent.clear()
            seq.unsent_lp.clear()

    def _release(self, seq: _Seq) -> None:
        """Free ``seq``'s samplers and slot (its KV stays there for a follow-up turn)."""
        llama = self.llama
        if seq.chain is not None:
            llama.llama_sampler_free(seq.chain)
            seq.chain = None
        if seq.grammar_smpl is not None:
            llama.llama_sampler_free(seq.grammar_smpl)
            seq.grammar_smpl = None
        seq.picker = None
        if seq.slot is not None:
            seq.slot.seq = None
            seq.slot.last_used = time.perf_counter()
        if seq in self.active:
            self.active.remove(seq)
        if seq in self.waiting:
            self.waiting.remove(seq)

    def _finish(self, seq: _Seq, stop_reason: str) -> None:
        """End ``seq``'s reply: what is held back goes out, then ``finished``."""
        calls: list[ParsedCall] = []
        if seq.pending and stop_reason != "cancelled":
            seq.route(
                seq.parser.feed(seq.pending)
                if seq.parser is not None
                else [("content", seq.pending)]
            )
            seq.emitted_chars += len(seq.pending)
        seq.pending = ""
        seq.release_logprobs()
        if seq.parser is not None:
            held, calls, _error = seq.parser.finish()
            seq.route(held)  # a call that did not parse is kept as text, never lost
            if stop_reason == "cancelled":
                calls = []
        self._flush(seq)  # what was generated before the stop goes out before "finished"
        self._release(seq)
        for i, call in enumerate(calls):
            self.send(
                "tool_call",
                rid=seq.rid,
                index=i,
                id=call.id,
                name=call.name,
                arguments=call.arguments,
            )
        if calls and stop_reason in ("eos", "stop"):
            stop_reason = "tool_calls"
        now = time.perf_counter()
        t_placed = seq.t_placed or now
        t_prefilled = seq.t_prefilled or now
        prefill_s = t_prefilled - t_placed
        decode_s = seq.t_last - seq.t_first if seq.generated else 0.0
        self.send(
            "finished",
            rid=seq.rid,
            text="".join(seq.text_parts),
            tool_calls=[
                {"index": i, "id": c.id, "name": c.name, "arguments": c.arguments}
                for i, c in enumerate(calls)
            ],
            reasoning="".join(seq.reasoning_parts),
            logprobs=seq.all_logprobs,
            metrics={
                "prompt_tokens": seq.evaluated,
                "prefill_s": prefill_s,
                "prefill_tokens_per_s": seq.evaluated / prefill_s if prefill_s > 0 else 0.0,
                "generated_tokens": seq.generated,
                "decode_s": decode_s,
                "decode_tokens_per_s": (seq.generated - 1) / decode_s
                if seq.generated > 1 and decode_s > 0
                else 0.0,
                "decode_llama_s": seq.decode_llama_s,
                "stop_reason": stop_reason,
                "template": seq.template,
                "total_s": now - seq.t_arrived,
                "cached_tokens": seq.keep,
                "reasoning_tokens": seq.reasoning_tokens,
                "stop_sequence": seq.stop_sequence,
                "queued_s": t_placed - seq.t_arrived,
            },
        )

    def _cancel(self, seq: _Seq) -> None:
        seq.next_tok = -1
        self._finish(seq, "cancelled")

    def _cancel_all(self) -> None:
        for seq in [*self.active, *self.waiting]:
            self._cancel(seq)

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

    def _logprob(self, tok: int, top_n: int, index: int) -> list[Any]:
        """[token text, log-probability, [[alternative, log-probability], ...]] from the raw
        logits the token was chosen from (batch position ``index``)."""
        n_vocab = self.n_vocab
        logits = np.ctypeslib.as_array(
            self.llama.llama_get_logits_ith(self.ctx, index), shape=(n_vocab,)
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
        limit = min(self.n_ctx_slot, self.n_batch, self.n_ubatch)
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
            for slot in self.slots:  # the chats' cached prefixes were cleared
                slot.cached = []
        self.send("embeddings", vectors=vectors, prompt_tokens=sum(len(t) for t in encoded))

    # ------------------------------------------------------------------ loop
    def serve(self) -> None:
        """Read requests and run the batch: the host blocks on its pipe only while nothing
        is generating; otherwise it looks at the pipe between two decode steps, so new
        requests join the running batch and a cancel stops one reply within one step."""
        poller = select.poll()
        poller.register(self.conn.fileno(), select.POLLIN)
        while True:
            idle = not self.active and not self.waiting and self.pending_embed is None
            if idle or poller.poll(0):
                if not self._read():
                    return
                while poller.poll(0):
                    if not self._read():
                        return
            self._schedule()

    def _schedule(self) -> None:
        """Apply a stop-everything flag, run a waiting embedding request once no reply is
        generating, fill free slots from the waiting requests (in arrival order), then run
        one decode step."""
        if self.cancel.is_set():
            self.cancel.clear()
            self._cancel_all()
        if self.pending_embed is not None and not self.active:
            texts, self.pending_embed = self.pending_embed, None
            self.embed(texts)
        while self.waiting and self.pending_embed is None:
            if not self._place(self.waiting[0]):
                break  # every slot is busy
            self.waiting.popleft()  # placed, or refused with its reason
        if self.active:
            self._step()

    def _read(self) -> bool:
        """Handle one message from the app; False when the host should end."""
        try:
            data = self.conn.recv_bytes()
        except (EOFError, OSError):
            return False  # the app went away
        msg = protocol.decode(data)
        kind = msg["type"]
        if kind == "shutdown":
            return False
        if kind == "load":
            if self.model:
                self.send("load_failed", message="A model is already loaded here.", log=[])
                return True
            try:
                params = EngineParams.from_dict(msg["params"])
            except (TypeError, ValueError) as exc:
                self.send("load_failed", message=f"Invalid load settings: {exc}", log=[])
                return True
            self.load(msg["path"], params)
        elif kind == "embed":
            if not self.model:
                self.send("error", message="No model is loaded: load a model first.")
            else:  # run once the replies being generated are done (it uses the whole cache)
                self.pending_embed = [str(t) for t in msg["texts"]]
        elif kind == "generate":
            rid = int(msg.get("rid") or 0)
            if not self.model:
                self.send("error", rid=rid, message="No model is loaded: load a model first.")
                return True
            seq = self._prepare(msg, time.perf_counter())
            if seq is not None:
                self.waiting.append(seq)
        elif kind == "cancel":
            for seq in [*self.active, *self.waiting]:
                if seq.rid == msg["rid"]:
                    self._cancel(seq)
        return True


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


def _slot_id(seq: _Seq) -> int:
    return seq.slot.id if seq.slot is not None else -1


class _Slot:
    """One of the context's ``n_parallel`` sequences: the tokens whose KV it holds (kept after
    a reply, for a follow-up turn) and the request using it, if any."""

    __slots__ = ("cached", "id", "last_used", "seq")

    def __init__(self, seq_id: int) -> None:
        self.id = seq_id
        self.cached: list[int] = []
        self.last_used = 0.0
        self.seq: _Seq | None = None


class _Seq:
    """One request on its way through the batch: the prompt still to evaluate, its sampler
    chain and grammar, the text on its way out and its metrics."""

    def __init__(
        self,
        rid: int,
        tokens: list[int],
        sampling: Sampling,
        template: str,
        stops: list[str],
        plan: PromptPlan | None,
        t_arrived: float,
    ) -> None:
        self.rid = rid
        self.tokens = tokens
        self.sampling = sampling
        self.template = template
        self.stops = [s for s in (*sampling.stop, *stops) if s]
        self.plan = plan
        self.t_arrived = t_arrived
        self.t_placed = self.t_prefilled = self.t_first = self.t_last = 0.0
        self.slot: _Slot | None = None
        self.todo: list[int] = []
        self.keep = 0  # prompt tokens reused from the slot's cache
        self.evaluated = 0
        self.next_tok = -1  # chosen, to be decoded at the next step (-1: none)
        self.chain: Any = None
        self.grammar_smpl: Any = None
        self.picker: _GrammarPicker | None = None
        self.greedy = False
        self.parser: ReplyParser | None = None
        self.preserved: frozenset[int] = frozenset()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        self.text_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.unsent: list[str] = []
        self.unsent_reasoning: list[str] = []
        self.unsent_lp: list[list[Any]] = []
        self.all_logprobs: list[list[Any]] = []
        self.lp_queue: deque[tuple[int, list[Any]]] = deque()
        self.emitted_chars = 0  # characters past the stop-string check
        self.generated = 0
        self.reasoning_tokens = 0
        self.decode_llama_s = 0.0  # time inside llama_decode between first and last token
        self.call_s = 0.0  # the last llama_decode, counted once its token is
        self.t_flushed = -FLUSH_S  # the first text is sent at once
        self.stop_sequence: str | None = None

    def route(self, pieces: list[tuple[str, str]]) -> None:
        for kind, text in pieces:
            if kind == "reasoning":
                self.reasoning_parts.append(text)
                self.unsent_reasoning.append(text)
            else:
                self.text_parts.append(text)
                self.unsent.append(text)

    def release_logprobs(self) -> None:
        """Logprobs of the tokens whose text is now emitted."""
        while self.lp_queue and self.lp_queue[0][0] <= self.emitted_chars:
            released = self.lp_queue.popleft()[1]
            self.unsent_lp.append(released)
            self.all_logprobs.append(released)


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

    def pick(self, index: int) -> int:
        """The token for the logits at batch position ``index``."""
        llama = self.llama
        logits = np.ctypeslib.as_array(
            llama.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,)
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
