"""Discover shows what a speed rests on ("calibrated from 5 runs") and filters for agents:
"Tool calling" keeps only models that can call tools."""

from __future__ import annotations

from pathlib import Path

from launcher.calibration import CalibrationStore, machine_key
from launcher.catalog import Catalog
from launcher.machines import resolve_machine
from launcher.recommend import recommend
from ui.models.candidates import Column
from ui.models.rows import CandidateRow, candidate_from
from ui.views.discover import DiscoverView


def _row(name: str, **kw: object) -> CandidateRow:
    fields: dict = {
        "key": f"org/{name}.gguf",
        "name": name,
        "repo": "org/m",
        "filename": f"{name}.gguf",
        "quant": "Q4_K_M",
        "size_bytes": 2**30,
        "verdict": "full_gpu",
        "tokens_per_s": 7.3,
    }
    fields.update(kw)
    return CandidateRow(**fields)


def test_the_speed_says_how_many_runs_it_rests_on(qtbot) -> None:
    view = DiscoverView()
    qtbot.addWidget(view)
    view.set_candidates(
        [
            _row("a", basis="calibrated", basis_runs=5),
            _row("b", basis="measured", basis_runs=1),
            _row("c"),
        ]
    )
    speeds = sorted(view.proxy.index(r, Column.SPEED).data() for r in range(3))
    assert speeds == [
        "7.3 tok/s (calibrated from 5 runs)",
        "7.3 tok/s (estimated)",
        "7.3 tok/s (measured from 1 run)",
    ]


def test_a_calibrated_recommendation_reaches_the_row_with_its_runs(app_home: Path) -> None:
    machine = resolve_machine("dgx-spark")
    store = CalibrationStore(app_home / "calibration.json")
    catalog = Catalog.load()
    recs = recommend(machine, "assistant", 8192, catalog, calibration=store)
    first = recs[0]
    settings = first.plan.calibration_settings()
    for _ in range(3):  # three runs of another model at 80 % of its estimate
        store.record(
            machine_key(machine),
            "some-other-model",
            settings,
            {"decode_tokens_per_s": settings["estimated_decode_tokens_per_s"] * 0.8},
        )
    again = recommend(machine, "assistant", 8192, catalog, calibration=store)
    row = candidate_from(again[0])
    assert row.basis == "calibrated" and row.basis_runs == 3
