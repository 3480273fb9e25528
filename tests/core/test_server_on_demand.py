"""Models loaded when a request names them and unloaded when idle (``OnDemand``), through the
real ``openai`` client against real model hosts of Gemma 3 270M: a request for a library model
that is not loaded loads it; simultaneous requests load it once; a model that does not fit
unloads the least recently used idle one, never one that is generating; idle unload ends the
host process. The library is two copies of Gemma under other names; "fits" is a rule given by
the test (one model at a time), as the memory plan would say on a small machine."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

from launcher.engine import EngineClient, EngineParams
from launcher.server.httpd import LocalApiServer
from launcher.server.pool import ModelRegistry, OnDemand, SharedModel

PARAMS = EngineParams(n_ctx=1024, n_threads=1, n_parallel=2)
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"


@dataclass
class Setup:
    registry: ModelRegistry
    on_demand: OnDemand
    server: LocalApiServer
    client: openai.OpenAI
    loads: list[str] = field(default_factory=list)
    hosts: list[SharedModel] = field(default_factory=list)
    limit: list[int] = field(default_factory=lambda: [1])  # models that "fit" at once

    def ids(self) -> list[str]:
        return sorted(m.id for m in self.client.models.list())


@pytest.fixture
def setup(gemma_path: Path, tmp_path: Path) -> Iterator[Setup]:
    library = {}
    for name in ("gemma-a", "gemma-b"):
        copy = tmp_path / f"{name}.gguf"
        os.symlink(gemma_path, copy)
        library[name] = str(copy)
    registry = ModelRegistry()
    state: dict[str, Any] = {}

    def load(path: str) -> SharedModel:
        state["setup"].loads.append(Path(path).stem)
        model = registry.share(EngineClient(), max_waiting=8)
        state["setup"].hosts.append(model)
        model.load(path, PARAMS)
        return model

    def fits(path: str) -> str | None:
        limit = state["setup"].limit[0]
        return None if len(registry.models()) < limit else f"only {limit} model(s) fit"

    on_demand = OnDemand(registry, lambda: dict(library), load, fits=fits)
    server = LocalApiServer(registry, port=0)
    server.start()
    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=300)
    s = Setup(registry, on_demand, server, client)
    state["setup"] = s
    try:
        yield s
    finally:
        client.close()
        on_demand.stop()
        server.stop()
        for model in s.hosts:
            model.unload()


def _ask(setup: Setup, name: str, max_tokens: int = 4) -> Any:
    return setup.client.completions.create(
        model=name, prompt=COUNTING, max_tokens=max_tokens, temperature=0
    )


def test_a_request_for_a_library_model_loads_it(setup: Setup) -> None:
    assert setup.ids() == []
    reply = _ask(setup, "gemma-a")
    assert reply.choices[0].text.strip().startswith("9")
    assert setup.ids() == ["gemma-a"]
    assert setup.loads == ["gemma-a"]
    # A name that is neither loaded nor in the library is still a 404.
    with pytest.raises(openai.NotFoundError):
        _ask(setup, "no-such-model")


def test_simultaneous_requests_load_the_model_once(setup: Setup) -> None:
    results: list[Any] = [None] * 4
    start = threading.Barrier(4)

    def ask(i: int) -> None:
        start.wait()
        try:
            results[i] = _ask(setup, "gemma-b").choices[0].text
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, str) and r.strip().startswith("9") for r in results), results
    assert setup.loads == ["gemma-b"]
    assert setup.ids() == ["gemma-b"]


def test_a_model_that_does_not_fit_evicts_the_idle_one(setup: Setup) -> None:
    _ask(setup, "gemma-a")
    a = setup.registry.get("gemma-a")
    assert a is not None
    pid = a.pid
    assert pid is not None and psutil.pid_exists(pid)
    raw = setup.client.completions.with_raw_response.create(
        model="gemma-b", prompt=COUNTING, max_tokens=4, temperature=0
    )
    assert raw.headers["x-spark-unloaded-models"] == "gemma-a"  # the reply says so
    assert setup.ids() == ["gemma-b"]
    assert not psutil.pid_exists(pid)  # the evicted model's host is gone, memory with it
    assert ("gemma-a", "unloaded to make room for gemma-b") in setup.on_demand.unloaded


def test_a_generating_model_is_never_evicted(setup: Setup) -> None:
    _ask(setup, "gemma-a")
    a = setup.registry.get("gemma-a")
    assert a is not None
    stream = setup.client.completions.create(
        model="gemma-a", prompt=COUNTING, max_tokens=300, temperature=0, stream=True
    )
    chunks = iter(stream)
    next(chunks)  # gemma-a is generating now
    with pytest.raises(openai.APIStatusError) as info:
        _ask(setup, "gemma-b")
    assert info.value.status_code == 503
    assert info.value.body is not None
    assert info.value.body["code"] == "model_does_not_fit"
    assert "generating" in info.value.body["message"]
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text  # the busy model went on to the end
    assert setup.ids() == ["gemma-a"]
    setup.limit[0] = 2  # room for both now: nothing is evicted
    _ask(setup, "gemma-b")
    assert setup.ids() == ["gemma-a", "gemma-b"]


def test_idle_models_are_unloaded_and_their_host_ends(setup: Setup) -> None:
    _ask(setup, "gemma-a")
    model = setup.registry.get("gemma-a")
    assert model is not None
    pid = model.pid
    setup.on_demand.idle_unload_s = 0.5
    setup.on_demand.start()
    deadline = time.monotonic() + 60
    while ("gemma-a", "idle") not in setup.on_demand.unloaded:
        assert time.monotonic() < deadline, "the idle model was never unloaded"
        time.sleep(0.05)
    assert setup.ids() == []
    assert pid is not None and not psutil.pid_exists(pid)
    # Asked again, it comes back.
    assert _ask(setup, "gemma-a").choices[0].text.strip().startswith("9")


def test_serve_loads_on_demand_and_unloads_when_idle(
    app_home: Path, gemma_path: Path, tmp_path: Path
) -> None:
    """``spark-launcher serve --on-demand --idle-unload`` as a user runs it, with no model
    named: a request loads one from the models folder, then it goes away unused."""
    import json
    import signal
    import subprocess
    import sys

    folder = tmp_path / "models"
    folder.mkdir()
    os.symlink(gemma_path, folder / "gemma-x.gguf")
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher", "serve", "--on-demand", "--models-dir", str(folder),
         "--parallel", "2", "--idle-unload", "1", "--port", "0", "--json", "--ctx", "1024",
         "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["models"] == []
        client = openai.OpenAI(base_url=ready["url"], api_key="none", max_retries=0)
        try:
            reply = client.completions.create(
                model="gemma-x", prompt=COUNTING, max_tokens=4, temperature=0
            )
            assert reply.choices[0].text.strip().startswith("9")
            deadline = time.monotonic() + 60
            while [m.id for m in client.models.list()]:
                assert time.monotonic() < deadline, "the idle model was never unloaded"
                time.sleep(0.1)
        finally:
            client.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
