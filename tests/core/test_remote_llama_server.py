"""Remote engines against llama.cpp's own ``llama-server`` serving the real Gemma 3 270M.

``llama-server`` is built from the llama.cpp source vendored in the llama-cpp-python sdist
(``tools/build_llama_tools.sh llama-server``, cached per user in
``~/.cache/spark-launcher/llama-tools-<version>/bin``). The tests run when that build is
cached, or build it first when ``SPARK_BUILD_LLAMA_TOOLS=1``; otherwise they are skipped with
the reason. How to run them: README, "Remote engines".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.common import llama_tools_bin
from launcher.cli import main
from launcher.compare import CompareRequest, ComparisonJob, RunDone
from launcher.engine import EngineClient, EngineParams, Loaded, ReplyFinished, Sampling, Token
from launcher.engine.remote import RemoteEngineClient
from launcher.errors import RemoteAuthError, RemoteEngineError
from launcher.machines import resolve_machine
from launcher.remotes import Remote, RemoteStore

ROOT = Path(__file__).resolve().parents[2]
LLAMA_SERVER = llama_tools_bin() / "llama-server"
KEY = "llama-server-key-31"
ALIAS = "gemma-270m"
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
COUNTING = [{"role": "user", "content": "Count from 1 to 300: 1, 2, 3, 4, 5,"}]

pytestmark = pytest.mark.llama_server


@pytest.fixture(scope="module")
def llama_server_exe() -> Path:
    if not LLAMA_SERVER.exists():
        if os.environ.get("SPARK_BUILD_LLAMA_TOOLS") != "1":
            pytest.skip(
                "llama-server is not built: run `tools/build_llama_tools.sh llama-server` "
                "(or set SPARK_BUILD_LLAMA_TOOLS=1)"
            )
        subprocess.run(
            ["bash", str(ROOT / "tools" / "build_llama_tools.sh"), "llama-server"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return LLAMA_SERVER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama_server(exe: Path, model: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A ``llama-server`` on a free loopback port, ready (``/health`` answers 200)."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(exe), "-m", str(model), "-a", ALIAS, "--host", "127.0.0.1",
             "--port", str(port), "--api-key", KEY, "-c", "2048", "-np", "1", "-t", "1",
             "--no-webui"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama-server exited: {log.read_text(errors='replace')[-800:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    pytest.fail(f"llama-server did not become ready: {log.read_text(errors='replace')[-800:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def llama_server(
    llama_server_exe: Path, gemma_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Remote]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    proc, url = start_llama_server(llama_server_exe, gemma_path, log)
    try:
        yield Remote("llamacpp", f"{url}/v1", KEY)
    finally:
        _stop(proc)


@pytest.fixture
def saved(app_home: Path, llama_server: Remote) -> Remote:
    return RemoteStore().save(llama_server)


def test_remote_add_lists_llama_servers_model(
    app_home: Path, llama_server: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    url = llama_server.base_url.removesuffix("/v1")  # the server's address, as a user pastes it
    assert main(["remote", "add", "llamacpp", url, "--api-key", KEY, "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["url"] == llama_server.base_url and added["models"] == [ALIAS]


def test_chat_streams_from_llama_server_with_its_usage_counts(saved: Remote) -> None:
    with RemoteEngineClient(paths=None) as client:
        loaded = client.load(f"remote:llamacpp/{ALIAS}")
        assert loaded.n_params > 0 and loaded.n_ctx_train > 0  # llama-server's model metadata
        events = list(client.chat(HELLO, Sampling(max_tokens=16, temperature=0.0)))
    tokens = [e for e in events if isinstance(e, Token)]
    done = events[-1]
    assert isinstance(done, ReplyFinished) and tokens
    m = done.metrics
    assert done.text == "".join(t.text for t in tokens) and done.text.strip()
    assert 0 < m.generated_tokens <= 16 and m.prompt_tokens > 5
    assert m.stop_reason in ("eos", "length") and m.remote and "llamacpp" in m.remote
    assert m.ttft_s > 0 and m.decode_tokens_per_s > 0


def test_cancel_stops_llama_server_and_it_answers_again(saved: Remote) -> None:
    with RemoteEngineClient(saved) as client:
        client.load(ALIAS)
        events: list[Any] = []
        for ev in client.chat(COUNTING, Sampling(max_tokens=600, temperature=0.0)):
            events.append(ev)
            if len(events) == 3:
                client.cancel()
        assert isinstance(events[-1], ReplyFinished)
        assert events[-1].metrics.stop_reason == "cancelled" and len(events) == 4
        again = list(client.chat(HELLO, Sampling(max_tokens=8, temperature=0.0)))
    assert isinstance(again[-1], ReplyFinished) and again[-1].metrics.stop_reason != "cancelled"


def test_a_wrong_key_is_refused_by_llama_server(llama_server: Remote) -> None:
    wrong = Remote("llamacpp", llama_server.base_url, "wrong-key")
    with RemoteEngineClient(wrong) as client, pytest.raises(RemoteAuthError) as info:
        client.load(ALIAS)  # llama-server lists models without a key; chat needs it
        list(client.chat(HELLO, Sampling(max_tokens=4)))
    assert "refused the API key" in str(info.value) and "wrong-key" not in str(info.value)


def test_compare_local_gemma_with_gemma_on_llama_server(saved: Remote, gemma_path: Path) -> None:
    request = CompareRequest(
        models=(str(gemma_path), f"remote:llamacpp/{ALIAS}"),
        prompt="What is the capital of France?",
        ctx=1024,
        sampling=Sampling(max_tokens=12, temperature=0.0),
    )
    job = ComparisonJob(
        request, save=False, machine=resolve_machine("unified=16GiB"), client_factory=_OneThread
    )
    runs = [ev.result for ev in job.run() if isinstance(ev, RunDone)]
    assert [r.error for r in runs] == [None, None]
    local, remote = runs
    assert remote.model == f"{ALIAS} @llamacpp"
    assert local.reply and remote.reply and remote.decode_tps and local.decode_tps


class _OneThread(EngineClient):
    def load(self, path: Any, params: Any = None, *args: Any, **kwargs: Any) -> Loaded:
        return super().load(path, EngineParams(n_ctx=1024, n_threads=1))


def test_a_killed_llama_server_mid_reply_is_a_clear_error_not_a_hang(
    llama_server_exe: Path, gemma_path: Path, tmp_path: Path
) -> None:
    proc, url = start_llama_server(llama_server_exe, gemma_path, tmp_path / "server.log")
    try:
        got = 0
        with (
            RemoteEngineClient(Remote("doomed", f"{url}/v1", KEY)) as client,
            pytest.raises(RemoteEngineError) as info,
        ):
            client.load(ALIAS)
            for ev in client.chat(COUNTING, Sampling(max_tokens=2000, temperature=0.0)):
                if isinstance(ev, Token):
                    got += 1
                    if got == 2:
                        os.kill(proc.pid, signal.SIGKILL)  # the server dies mid-reply
        assert got >= 2
        assert "doomed" in str(info.value) and "check it" in str(info.value)
    finally:
        _stop(proc)
