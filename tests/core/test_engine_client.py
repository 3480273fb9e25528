"""The engine on real llama.cpp and the real Gemma 3 270M: load, stream, cancel, two hosts,
many chats, unload. One host is loaded for the whole module (loads are the slow part)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from launcher.engine import (
    PLAIN_COMPLETION,
    EngineClient,
    EngineParams,
    Event,
    HostCrashed,
    Loaded,
    LoadProgress,
    ReplyFinished,
    Sampling,
    Token,
)
from launcher.engine.host import FLUSH_S
from launcher.errors import EngineError
from launcher.hardware import MemorySampler, probe

# One thread: the test machine's few cores are shared, and spinning llama.cpp worker threads
# slow down tenfold under contention. Production loads use the physical core count.
PARAMS = EngineParams(n_ctx=1024, n_threads=1)
GREEDY = Sampling(max_tokens=24, temperature=0.0)
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@dataclass
class Host:
    client: EngineClient
    loaded: Loaded
    progress: list[LoadProgress]


@pytest.fixture(scope="module")
def host(gemma_path: Path) -> Iterator[Host]:
    client = EngineClient()
    progress: list[LoadProgress] = []
    loaded = client.load(gemma_path, PARAMS, on_progress=progress.append)
    yield Host(client, loaded, progress)
    client.unload()


def _collect(events: Iterator[Event]) -> tuple[list[str], ReplyFinished]:
    tokens: list[str] = []
    for ev in events:
        if isinstance(ev, Token):
            tokens.append(ev.text)
        elif isinstance(ev, ReplyFinished):
            return tokens, ev
        else:
            pytest.fail(f"unexpected event {ev!r}")
    pytest.fail("the stream ended without ReplyFinished")


def _ram_held(sampler: MemorySampler, label: str) -> int:
    """Bytes the sampler attributes to ``label`` in system (or unified) memory."""
    pool = next(p for p in sampler.sample().pools if p.kind != "vram")
    return pool.models.get(label, 0)


def test_load_reports_buffers_memory_and_progress(host: Host, gemma_path: Path) -> None:
    loaded = host.loaded
    assert loaded.pid == host.client.pid and psutil.pid_exists(loaded.pid)
    assert loaded.pid != psutil.Process().pid  # the model lives in its own process
    # llama.cpp's own buffer report: weights, KV cache and compute buffer.
    assert loaded.buffer_total("model") > 200 * 2**20
    assert loaded.buffer_total("kv") > 0
    assert loaded.buffer_total("compute") > 0
    assert loaded.rss_bytes > 50 * 2**20
    assert loaded.n_ctx == 1024 and loaded.n_ctx_train >= 1024
    assert loaded.chat_template is None  # Gemma 3 270M is a base model without a template
    assert "gemma3" in loaded.description
    assert loaded.params.n_threads == 1 and loaded.params.n_threads_batch == 1
    assert loaded.load_s > 0
    assert host.progress and host.progress[-1].fraction == 1.0
    assert loaded.path == str(gemma_path)


def test_chat_streams_tokens_then_honest_metrics(host: Host) -> None:
    tokens, done = _collect(host.client.chat(FRANCE, GREEDY))
    assert "Paris" in done.text
    assert "".join(tokens) == done.text
    m = done.metrics
    # No template: a plain transcript is completed, and the metrics say so.
    assert m.template == PLAIN_COMPLETION
    assert m.stop_reason in ("stop", "eos", "length")
    assert m.prompt_tokens > 5 and m.prefill_tokens_per_s > 0
    assert m.generated_tokens >= len(tokens) and m.decode_tokens_per_s > 0
    # Most of the decode time is llama.cpp's: the engine's own loop is a small remainder.
    assert 0.5 * m.decode_s < m.decode_llama_s < m.decode_s
    assert 0 < m.ttft_s <= m.total_s
    # Greedy decoding is reproducible, so a second run gives the same reply.
    assert _collect(host.client.chat(FRANCE, GREEDY))[1].text == done.text


def test_fast_replies_stream_in_batches_without_losing_text(host: Host) -> None:
    # Gemma 270M decodes tens of tokens a second: the host batches the text to at most one
    # message per FLUSH_S (each message wakes the app), yet the first text still comes at
    # once and nothing generated is lost.
    tokens, done = _collect(host.client.complete("Once upon a time", Sampling(100, temperature=0)))
    m = done.metrics
    assert m.generated_tokens > 20
    assert "".join(tokens) == done.text and done.text.strip()
    assert len(tokens) >= 2  # streamed, not delivered all at the end
    assert len(tokens) <= m.decode_s / FLUSH_S + 3  # first, one per interval, the last
    assert m.ttft_s < m.total_s / 2


def test_plain_completion_and_length_limit(host: Host) -> None:
    _, done = _collect(host.client.complete("1, 2, 3, 4, 5,", Sampling(8, temperature=0)))
    assert done.metrics.stop_reason == "length"
    assert done.metrics.generated_tokens == 8
    assert done.text.strip().startswith("6")


def test_cancel_from_another_thread_stops_the_reply_and_keeps_the_model(host: Host) -> None:
    client = host.client
    pid = client.pid
    stream = client.complete("1, 2, 3, 4, 5,", Sampling(max_tokens=500, temperature=0))
    seen: list[str] = []
    for ev in stream:
        assert isinstance(ev, Token)
        seen.append(ev.text)
        if len(seen) == 3:
            break_after = threading.Thread(target=client.cancel)
            break_after.start()
            break_after.join()  # cancel() has returned: no token may arrive after this
            break
    after = list(stream)
    assert [type(e) for e in after] == [ReplyFinished]
    done = after[0]
    assert isinstance(done, ReplyFinished)
    assert done.metrics.stop_reason == "cancelled"
    assert done.text == "".join(seen)
    assert done.metrics.generated_tokens < 100  # stopped long before max_tokens
    # The model stays loaded in the same process and answers again.
    assert client.pid == pid and client.is_loaded
    assert "Paris" in _collect(client.chat(FRANCE, GREEDY))[1].text


def test_cancel_interrupts_a_long_prompt_evaluation(host: Host) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("llama.cpp's abort callback works on the CPU backend only")
    prompt = "hello" + " world" * 950  # about 950 tokens: seconds of prefill on one thread
    timer = threading.Timer(0.1, host.client.cancel)
    timer.start()
    events = list(host.client.complete(prompt, Sampling(max_tokens=5, temperature=0)))
    timer.join()
    done = events[-1]
    assert isinstance(done, ReplyFinished) and len(events) == 1
    assert done.metrics.stop_reason == "cancelled"
    assert done.metrics.generated_tokens == 0
    assert done.metrics.prompt_tokens < 900  # stopped inside the prompt, not after it
    assert "Paris" in _collect(host.client.chat(FRANCE, GREEDY))[1].text


def test_abandoned_stream_leaves_the_host_ready(host: Host) -> None:
    stream = host.client.complete("Once upon a time", Sampling(max_tokens=200, temperature=0))
    for _ in zip(range(2), stream, strict=False):
        pass
    stream.close()  # the caller walks away mid-reply
    assert "Paris" in _collect(host.client.chat(FRANCE, GREEDY))[1].text


def test_a_new_request_while_a_stream_is_suspended_replaces_it(host: Host) -> None:
    first = host.client.complete("Once upon a time", Sampling(max_tokens=200, temperature=0))
    assert isinstance(next(first), Token)
    # Same thread, the first stream still open: the new chat must not wait for it forever.
    assert "Paris" in _collect(host.client.chat(FRANCE, GREEDY))[1].text
    assert list(first) == []  # the first stream was closed (its reply cancelled)


def test_a_conversation_longer_than_the_context_is_refused(host: Host) -> None:
    long = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(EngineError, match="does not fit in the context"):
        _collect(host.client.chat(long, GREEDY))
    assert "Paris" in _collect(host.client.chat(FRANCE, GREEDY))[1].text


def test_many_chats_do_not_grow_the_host_memory(host: Host) -> None:
    client = host.client
    short = Sampling(max_tokens=1, temperature=0)  # prefill + one sampled token per chat
    for _ in range(10):  # warm-up: allocator pools, page cache of the weights
        _collect(client.chat(FRANCE, short))
    rss_before = client.memory()[0]
    for i in range(200):
        msgs = [{"role": "user", "content": f"Say the number {i}."}]
        _, done = _collect(client.chat(msgs, short))
        assert done.metrics.generated_tokens >= 1
    rss_after = client.memory()[0]
    assert rss_after <= rss_before * 1.05, (rss_before, rss_after)


def test_two_hosts_stream_at_once_independently(host: Host, gemma_path: Path) -> None:
    prompt = "The three primary colours are"
    sampling = Sampling(max_tokens=16, temperature=0)
    expected = _collect(host.client.complete(prompt, sampling))[1].text
    second = EngineClient()
    sampler = MemorySampler(probe())
    try:
        loaded = second.load(gemma_path, EngineParams(n_ctx=512, n_threads=1))
        assert loaded.pid != host.loaded.pid
        sampler.track(loaded.pid, "second")
        assert _ram_held(sampler, "second") > 50 * 2**20
        results: dict[str, str] = {}
        errors: list[BaseException] = []

        def run(name: str, client: EngineClient) -> None:
            try:
                results[name] = _collect(client.complete(prompt, sampling))[1].text
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=("a", host.client)),
            threading.Thread(target=run, args=("b", second)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert results == {"a": expected, "b": expected}
    finally:
        pid = second.pid
        second.unload()
    # Unloading ends the process: its PID is gone and nothing is attributed to it.
    assert pid is not None and not psutil.pid_exists(pid)
    assert _ram_held(sampler, "second") == 0
    sampler.close()
    assert second.pid is None and not second.is_loaded
    assert second.memory() == (0, None)
    with pytest.raises(EngineError, match="load a model first"):
        list(second.chat(FRANCE))


def test_unexpected_event_types_never_appear(host: Host) -> None:
    events = list(host.client.chat(FRANCE, Sampling(max_tokens=4, temperature=0)))
    assert all(isinstance(e, Token) for e in events[:-1])
    assert isinstance(events[-1], ReplyFinished)
    assert not isinstance(events[-1], HostCrashed)
