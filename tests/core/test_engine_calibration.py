"""Measured loads and replies feed the calibration store, and estimates then use them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from launcher.engine import EngineClient, EngineParams, ReplyFinished, Sampling
from launcher.engine.calibrate import MIN_CONDITIONS_S, model_key
from launcher.gguf.reader import read_model
from launcher.hardware import probe
from launcher.planning import ModelSummary, plan
from launcher.planning.calibration import CalibrationStore, is_contended, machine_key


def test_a_planned_load_and_its_replies_make_the_estimate_measured(
    gemma_path: Path, tmp_path: Path
) -> None:
    store = CalibrationStore(tmp_path / "calibration.json")
    machine = probe()
    summary = ModelSummary.from_header(read_model(gemma_path))
    memory_plan = plan(summary, machine, ctx=1024, flash_attn=False)
    assert memory_plan.speed.basis != "measured"
    client = EngineClient(calibration=store, machine_key=machine_key(machine))
    try:
        # The plan's settings pinned to one thread (the test machine's cores are shared and
        # llama.cpp's spinning threads slow down under contention), filed under the plan.
        one_thread = dataclasses.replace(EngineParams.from_plan(memory_plan), n_threads=1)
        loaded = client.load(gemma_path, one_thread, plan=memory_plan)
        assert loaded.params == one_thread.resolved()  # exactly the plan's settings
        done = None
        for ev in client.complete("1, 2, 3, 4, 5,", Sampling(max_tokens=12, temperature=0)):
            if isinstance(ev, ReplyFinished):
                done = ev
        assert done is not None and done.metrics.generated_tokens == 12
    finally:
        client.unload()
    assert model_key(str(gemma_path)) == summary.key
    runs = store.runs(machine_key(machine), summary.key)
    assert any(r["measured"].get("kv_bytes", 0) > 0 for r in runs)  # the load
    decode = [
        r["measured"]["decode_tokens_per_s"] for r in runs if "decode_tokens_per_s" in r["measured"]
    ]
    assert decode == [done.metrics.decode_tokens_per_s]
    # the reply is filed with the machine's load while it ran (other processes' CPU share),
    # so a run measured during a build can be discounted later
    (reply,) = [r for r in runs if "decode_tokens_per_s" in r["measured"]]
    if done.metrics.total_s >= MIN_CONDITIONS_S * 1.5:  # long enough for CPU-time counters
        assert 0.0 <= reply["conditions"]["other_cpu_share"] <= 1.0
        assert reply["conditions"]["cpu_count"] >= 1
    # The estimator now quotes what was measured on this machine with these settings, unless
    # the run was measured while other processes kept the CPU busy (shared test machines).
    again = plan(summary, machine, ctx=1024, flash_attn=False, calibration=store)
    if is_contended(reply):
        assert again.speed.basis == "estimated"
        return
    assert again.speed.basis == "measured"
    assert again.speed.decode_tokens_per_s == round(decode[0], 2)
