"""``spark-launcher serve`` as a user runs it: a real process loads the model, prints where it
serves, answers the ``openai`` client, and Ctrl-C ends it and its model host cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import openai
import psutil

from launcher.server.recording import read_traffic, traffic_file


def test_serve_answers_then_ctrl_c_stops_it_cleanly(app_home: Path, gemma_path: Path) -> None:
    """With ``--record`` the request is also kept for ``compare --suite api-log``."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launcher",
            "serve",
            str(gemma_path),
            "--port",
            "0",
            "--json",
            "--ctx",
            "1024",
            "--threads",
            "1",
            "--record",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["models"] == ["gemma-3-270m-q4_k_m"]
        assert ready["url"].startswith("http://127.0.0.1:")
        children = psutil.Process(proc.pid).children()  # the model host (+ mp's tracker)

        client = openai.OpenAI(base_url=ready["url"], api_key="none", max_retries=0)
        try:
            reply = client.chat.completions.create(
                model="gemma-3-270m-q4_k_m",
                messages=[{"role": "user", "content": "Say hello."}],
                max_tokens=6,
            )
        finally:
            client.close()
        assert reply.choices[0].message.content is not None
        recorded = read_traffic(traffic_file())
        assert [e["messages"][-1]["content"] for e in recorded.entries] == ["Say hello."]

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        # The host was unloaded; multiprocessing's tracker leaves when it sees its parent go.
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive
        err = proc.stderr.read() if proc.stderr else ""
        assert "loaded in" in err and "Recording chat requests to" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
