"""Serving many at once, on real llama.cpp and the real Gemma 3 270M with the real ``openai``
client: a model host with parallel slots generates several replies in one batch (continuous
batching), each as it would alone; a cancelled or disconnected reply frees its slot while the
others go on; more requests than slots queue and all finish.

Why the greedy replies compared here are counting prompts: llama.cpp's batched kernels add up
in another order when a batch holds several sequences (a matrix product over 4 rows is not 4
products over one row), so logits differ in the last bits. Where two candidates are within a
hundredth of a nat (Gemma 270M's "Once upon a time, there was a" -> " small" -2.831 vs " man"
-2.843), greedy decoding may then take the other one, on llama-server as here. Counting has
no near ties, so batched and solo replies must be equal token for token.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from launcher.engine import EngineClient, EngineParams, ReplyFinished, Sampling, Token
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry, SharedModel

SLOTS = 4
# One thread: the test machine's few cores are shared (see test_engine_client.py).
PARAMS = EngineParams(n_ctx=2048, n_threads=1, n_parallel=SLOTS)
PROMPTS = [f"{s}, {s + 1}, {s + 2}, {s + 3}," for s in (1, 20, 300, 4000, 50, 600)]
GREEDY = Sampling(max_tokens=24, temperature=0.0)


@dataclass
class Served:
    server: LocalApiServer
    model: SharedModel
    client: openai.OpenAI
    solo: dict[str, str]  # each prompt's greedy reply, generated alone


def _text(events: Iterator[Any]) -> ReplyFinished:
    done = None
    for ev in events:
        if isinstance(ev, ReplyFinished):
            done = ev
    assert done is not None
    return done


def _wait(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def served(gemma_path: Path) -> Iterator[Served]:
    registry = ModelRegistry()
    model = registry.share(EngineClient(), max_waiting=16)
    model.load(str(gemma_path), PARAMS)
    # Each prompt alone first: the reference the batched replies are held to.
    solo = {p: _text(model.complete(p, GREEDY)).text for p in PROMPTS}
    server = LocalApiServer(registry, port=0)
    server.start()
    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=300)
    try:
        yield Served(server, model, client, solo)
    finally:
        client.close()
        server.stop()
        model.unload()


def _ask_all(served: Served, prompts: list[str], stream: bool) -> list[Any]:
    results: list[Any] = [None] * len(prompts)
    start = threading.Barrier(len(prompts))

    def ask(i: int) -> None:
        start.wait()
        try:
            if stream:
                chunks = served.client.completions.create(
                    model=served.model.name,
                    prompt=prompts[i],
                    max_tokens=GREEDY.max_tokens,
                    temperature=0,
                    stream=True,
                )
                results[i] = "".join(c.choices[0].text for c in chunks if c.choices)
            else:
                reply = served.client.completions.create(
                    model=served.model.name,
                    prompt=prompts[i],
                    max_tokens=GREEDY.max_tokens,
                    temperature=0,
                )
                results[i] = reply.choices[0].text
        except Exception as exc:  # reported by the test
            results[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_the_host_reports_its_slots_and_splits_the_context(served: Served) -> None:
    loaded = served.model.loaded
    assert loaded.n_parallel == SLOTS
    assert loaded.n_ctx_slot == loaded.n_ctx // SLOTS
    assert served.model.queue.slots == SLOTS
    conn = http.client.HTTPConnection("127.0.0.1", served.server.port, timeout=30)
    conn.request("GET", "/props")
    props = json.loads(conn.getresponse().read())
    conn.close()
    assert props["total_slots"] == SLOTS


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_concurrent_requests_each_get_the_reply_they_get_alone(
    served: Served, stream: bool
) -> None:
    prompts = PROMPTS[:SLOTS]
    results = _ask_all(served, prompts, stream)
    for prompt, got in zip(prompts, results, strict=True):
        assert not isinstance(got, Exception), got
        assert got == served.solo[prompt], prompt


def test_more_clients_than_slots_queue_and_all_finish_correctly(served: Served) -> None:
    prompts = PROMPTS + PROMPTS[:2]  # 8 clients, 4 slots
    results = _ask_all(served, prompts, stream=True)
    for prompt, got in zip(prompts, results, strict=True):
        assert not isinstance(got, Exception), got
        assert got == served.solo[prompt], prompt
    _wait(lambda: served.model.queue.holding() == 0, "every slot to be free")


def test_a_short_request_finishes_while_a_long_one_is_still_generating(served: Served) -> None:
    """Replies share the batch: a short one does not wait for a long one to end."""
    model = served.model
    order: list[str] = []
    long = model.complete("1, 2, 3,", Sampling(max_tokens=400, temperature=0))
    first = next(long)  # the long reply is generating now
    assert isinstance(first, Token)

    def finish_long() -> None:
        _text(long)
        order.append("long")

    waiter = threading.Thread(target=finish_long)
    waiter.start()
    short = _text(model.complete(PROMPTS[1], GREEDY))
    order.append("short")
    waiter.join()
    assert order == ["short", "long"]
    assert short.text == served.solo[PROMPTS[1]]


def test_cancelling_one_reply_leaves_the_others_going(served: Served) -> None:
    client = served.model.client
    a = client.complete(PROMPTS[0], Sampling(max_tokens=300, temperature=0))
    b = client.complete(PROMPTS[2], GREEDY)
    assert isinstance(next(a), Token)
    results: dict[str, ReplyFinished] = {}
    reader = threading.Thread(target=lambda: results.setdefault("b", _text(b)))
    reader.start()
    a.cancel()
    results["a"] = _text(a)
    reader.join()
    assert results["a"].metrics.stop_reason == "cancelled"
    assert results["a"].metrics.generated_tokens < 300
    assert results["b"].metrics.stop_reason == "length"
    assert results["b"].text == served.solo[PROMPTS[2]]


def test_a_client_that_disconnects_frees_its_slot_and_the_others_finish(
    served: Served,
) -> None:
    body = {"prompt": "1, 2, 3,", "max_tokens": 1500, "stream": True, "temperature": 0}
    leavers = []
    for _ in range(SLOTS - 1):
        conn = http.client.HTTPConnection("127.0.0.1", served.server.port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "x/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.readline().startswith(b"data: ")
        leavers.append((conn, resp))
    stayer = _ask_all(served, [PROMPTS[3]], stream=True)  # alongside the three generating
    for conn, resp in leavers:  # they go away mid-reply
        resp.close()
        conn.close()
    assert stayer == [served.solo[PROMPTS[3]]]
    _wait(lambda: served.model.queue.holding() == 0, "the disconnected replies to end")
    # Every slot serves again.
    results = _ask_all(served, PROMPTS[:SLOTS], stream=False)
    assert results == [served.solo[p] for p in PROMPTS[:SLOTS]]


def test_a_request_that_does_not_fit_its_slot_is_refused_with_both_sizes(
    served: Served,
) -> None:
    words = "word " * (PARAMS.n_ctx // SLOTS + 50)  # fits the context, not one slot of it
    with pytest.raises(openai.BadRequestError) as info:
        served.client.completions.create(model=served.model.name, prompt=words, max_tokens=4)
    assert info.value.body is not None
    assert info.value.body["code"] == "context_length_exceeded"
    assert str(PARAMS.n_ctx // SLOTS) in info.value.body["message"]


def test_replies_that_waited_for_a_slot_count_the_wait_in_ttft(served: Served) -> None:
    """Six replies, four slots: two wait for a turn, and their metrics say so honestly."""
    model = served.model
    done: list[ReplyFinished] = []
    lock = threading.Lock()

    def run(prompt: str) -> None:
        finished = _text(model.complete(prompt, GREEDY, source=f"api:{prompt}"))
        with lock:
            done.append(finished)

    threads = [threading.Thread(target=run, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == len(PROMPTS)
    waited = [f for f in done if f.metrics.queued_s > 0]
    assert len(waited) >= len(PROMPTS) - SLOTS
    for f in done:
        assert f.metrics.ttft_s >= f.metrics.queued_s
        assert f.metrics.total_s >= f.metrics.ttft_s


def test_each_slot_has_its_own_grammar_sampling_and_logprobs(served: Served) -> None:
    """A schema-constrained reply, a sampled one with logprobs and a greedy one in the same
    batch: each follows its own settings (the grammar binds only its own reply)."""
    client = served.model.client
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    person = [{"role": "user", "content": "Describe a person."}]
    streams = {
        "json": client.chat(person, Sampling(max_tokens=80, temperature=0, json_schema=schema)),
        "sampled": client.complete(
            "Once upon a time", Sampling(max_tokens=16, temperature=0.9, seed=7, logprobs=2)
        ),
        "greedy": client.complete(PROMPTS[4], GREEDY),
    }
    results: dict[str, ReplyFinished] = {}
    threads = [
        threading.Thread(target=lambda k=k, s=s: results.setdefault(k, _text(s)))
        for k, s in streams.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = json.loads(results["json"].text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
    sampled = results["sampled"]
    assert len(sampled.logprobs) == sampled.metrics.generated_tokens > 0
    assert all(len(lp.top) == 2 for lp in sampled.logprobs)
    assert results["greedy"].text == served.solo[PROMPTS[4]]


def test_a_follow_up_finds_its_prefix_in_its_slot_after_other_conversations(
    served: Served,
) -> None:
    """Each slot keeps its cache: a conversation's next turn reuses its prompt's KV even when
    other requests ran in between (with one slot they would have overwritten it)."""
    client = served.model.client
    story = "Here is a long story about a lighthouse keeper and the sea. " * 4
    first = _text(client.complete(story, GREEDY))
    for prompt in PROMPTS[:3]:  # other clients' requests in between
        _text(client.complete(prompt, GREEDY))
    follow_up = _text(client.complete(story + first.text + " Then", GREEDY))
    assert follow_up.metrics.cached_tokens >= first.metrics.prompt_tokens
