"""Noisy measurements do not rewrite estimates: contention, outliers and the factor bound.

Issue 19: after a few chats measured while the CPU was busy with other work, every estimate on
the machine collapsed about twelvefold, and a later fast run did not restore them. These tests
replay such sequences of recorded runs through the store and the planner.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.engine.calibrate import conditions_since, cpu_mark
from launcher.machines import resolve_machine
from launcher.planning import MemoryPlan, ModelSummary, SpeedEstimate, plan
from launcher.planning.calibration import (
    FACTOR_BOUNDS,
    CalibrationStore,
    is_contended,
    machine_key,
)

MACHINE = resolve_machine("dgx-spark")
KEY = machine_key(MACHINE)
CLEAN = {"other_cpu_share": 0.03, "load_avg_1m": 1.2}
BUSY = {"other_cpu_share": 0.9, "load_avg_1m": 19.0}


Planned = tuple[ModelSummary, MemoryPlan]


def _plans() -> tuple[Planned, Planned]:
    """Two catalog models planned on the reference DGX Spark, without calibration."""
    from launcher.catalog import Catalog

    cands = {c.model.id: c for c in Catalog.load().candidates(quants=["Q4_K_M"])}
    a = plan(cands["qwen3-32b"].summary, MACHINE, 8192)
    b = plan(cands["qwen3-30b-a3b"].summary, MACHINE, 8192)
    return (cands["qwen3-32b"].summary, a), (cands["qwen3-30b-a3b"].summary, b)


def _run(
    store: CalibrationStore, summary: ModelSummary, p: MemoryPlan, ratio: float, cond: dict | None
) -> None:
    """One recorded reply at ``ratio`` x the estimate, with the machine's load ``cond``."""
    measured = {"decode_tokens_per_s": p.speed.decode_tokens_per_s * ratio}
    store.record(KEY, summary.key, p.calibration_settings(), measured, conditions=cond)


@pytest.fixture
def store(tmp_path: Path) -> CalibrationStore:
    return CalibrationStore(tmp_path / "calibration.json")


def test_chats_under_contention_do_not_collapse_other_estimates(
    store: CalibrationStore, app_home: Path
) -> None:
    (sa, pa), (sb, pb) = _plans()
    # two normal runs, then four chats while a build kept the CPU busy (1/12 of the speed),
    # then a fast run again: the sequence of the report.
    for ratio, cond in [(0.9, CLEAN), (0.92, CLEAN)] + [(0.9 / 12, BUSY)] * 4 + [(0.91, CLEAN)]:
        _run(store, sa, pa, ratio, cond)
    assert sum(is_contended(r) for r in store.runs(KEY)) == 4
    other = plan(sb, MACHINE, 8192, calibration=store)
    assert other.speed.basis == "calibrated" and other.speed.runs == 3
    assert other.speed.decode_tokens_per_s == pytest.approx(
        pb.speed.decode_tokens_per_s * 0.91, rel=0.01
    )
    assert other.speed.basis_label == "calibrated from 3 runs"
    # the model itself is quoted from its clean runs, not the contended ones
    same = plan(sa, MACHINE, 8192, calibration=store)
    assert same.speed.basis == "measured" and same.speed.runs == 3
    assert same.speed.decode_tokens_per_s == pytest.approx(
        pa.speed.decode_tokens_per_s * 0.91, rel=0.01
    )


def test_runs_under_contention_never_set_an_estimate(
    store: CalibrationStore, app_home: Path
) -> None:
    """Kept in the store, but neither other models nor the model itself are quoted from them:
    a chat during a build says more about the build than about this machine."""
    (sa, pa), (sb, pb) = _plans()
    for _ in range(3):
        _run(store, sa, pa, 1 / 12, BUSY)
    assert len(store.runs(KEY, sa.key)) == 3
    assert store.lookup(KEY, sa.key, pa.calibration_settings()) is None
    for s_, p_ in ((sa, pa), (sb, pb)):
        again = plan(s_, MACHINE, 8192, calibration=store)
        assert again.speed.basis == "estimated"
        assert again.speed.decode_tokens_per_s == p_.speed.decode_tokens_per_s


def test_a_single_outlier_does_not_move_the_estimate(
    store: CalibrationStore, app_home: Path
) -> None:
    (sa, pa), (sb, pb) = _plans()
    # runs whose load was not measured (an older file, a stall on the GPU) count as clean
    _run(store, sa, pa, 0.8, None)
    _run(store, sa, pa, 0.8 / 12, None)
    _run(store, sb, pb, 0.8, None)
    _run(store, sb, pb, 0.8 / 12, None)
    for p_, s_ in ((pa, sa), (pb, sb)):
        again = plan(s_, MACHINE, 8192, calibration=store)
        assert again.speed.basis == "measured"
        assert again.speed.decode_tokens_per_s == pytest.approx(
            p_.speed.decode_tokens_per_s * 0.8, rel=0.01
        )
    assert store.factor(KEY) == pytest.approx(0.8)


def test_one_run_does_not_calibrate_every_model(store: CalibrationStore, app_home: Path) -> None:
    (sa, pa), (sb, _) = _plans()
    _run(store, sa, pa, 0.5, CLEAN)
    assert plan(sa, MACHINE, 8192, calibration=store).speed.basis == "measured"
    assert plan(sb, MACHINE, 8192, calibration=store).speed.basis == "estimated"
    _run(store, sa, pa, 0.5, CLEAN)
    assert plan(sb, MACHINE, 8192, calibration=store).speed.basis == "calibrated"


@pytest.mark.parametrize("ratio", [0.1, 8.0])
def test_calibration_moves_an_estimate_only_so_far(
    store: CalibrationStore, app_home: Path, ratio: float
) -> None:
    (sa, pa), (sb, pb) = _plans()
    for _ in range(3):
        _run(store, sa, pa, ratio, CLEAN)
    bound = FACTOR_BOUNDS[0] if ratio < 1 else FACTOR_BOUNDS[1]
    other = plan(sb, MACHINE, 8192, calibration=store)
    assert other.speed.basis == "calibrated"
    assert other.speed.decode_tokens_per_s == pytest.approx(
        pb.speed.decode_tokens_per_s * bound, rel=0.01
    )
    assert "the most calibration may move it" in other.speed.explanation


def test_basis_label() -> None:
    assert SpeedEstimate(1, 1).basis_label == "estimated"
    assert SpeedEstimate(1, 1, "calibrated", runs=5).basis_label == "calibrated from 5 runs"
    assert SpeedEstimate(1, 1, "measured", runs=1).basis_label == "measured from 1 run"


def test_the_load_of_other_processes_is_measured() -> None:
    """A process spinning on the CPU during a run is contention; the same process counted as
    the run's own (the model host) is not."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        as_other, as_host = cpu_mark(None), cpu_mark(spinner.pid)
        time.sleep(1.0)
        other, host = conditions_since(as_other), conditions_since(as_host)
    finally:
        spinner.kill()
        spinner.wait()
    n = other["cpu_count"]
    # the two windows are the same second: they differ by the spinner's CPU time, which is
    # most of a core (allowing for a crowded test machine)
    assert other["other_cpu_share"] - host["other_cpu_share"] >= 0.3 / n
    assert other["other_cpu_share"] >= 0.3 / n
    # too short a run, or no counters: nothing is claimed
    assert conditions_since(cpu_mark(None)) == {}
    assert conditions_since(None) == {}


def test_conditions_are_stored_with_the_run(store: CalibrationStore) -> None:
    store.record(KEY, "m", {"ctx": 4096}, {"decode_tokens_per_s": 9.0}, conditions=BUSY)
    store.record(KEY, "m", {"ctx": 4096}, {"decode_tokens_per_s": 9.0})
    runs = store.runs(KEY, "m")
    assert runs[0]["conditions"] == BUSY and "conditions" not in runs[1]
    assert [is_contended(r) for r in runs] == [True, False]
