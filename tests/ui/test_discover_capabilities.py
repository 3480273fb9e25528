"""Discover shows what a speed rests on ("calibrated from 5 runs") and filters for agents:
"Tool calling" keeps only models that can call tools."""

from __future__ import annotations

from pathlib import Path

from launcher.catalog import Catalog
from launcher.machines import resolve_machine
from launcher.planning.calibration import CalibrationStore, machine_key
from launcher.recommend import recommend
from ui.models.candidates import CandidateRole, Column
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


def test_tool_calling_hides_models_that_cannot_call_tools(qtbot) -> None:
    view = DiscoverView()
    qtbot.addWidget(view)
    view.set_candidates(
        [
            _row("agent", capabilities=("tools", "reasoning")),
            _row("vision-only", capabilities=("vision",)),
            _row("hub-result"),  # a Hub search result: abilities unknown
        ]
    )

    def names() -> set[str]:
        return {
            view.proxy.index(r, Column.MODEL).data(CandidateRole.ROW).name
            for r in range(view.proxy.rowCount())
        }

    assert names() == {"agent", "vision-only", "hub-result"}
    view.tools_only.setChecked(True)
    assert names() == {"agent"}
    view.tools_only.setChecked(False)
    assert names() == {"agent", "vision-only", "hub-result"}


def test_catalog_capabilities_reach_the_discover_rows(qtbot, app_home: Path) -> None:
    """Real catalog recommendations: with "Tool calling" on, only tool-calling models stay."""
    catalog = Catalog.load()
    recs = recommend(resolve_machine("dgx-spark"), None, 8192, catalog, one_per_model=True)
    view = DiscoverView()
    qtbot.addWidget(view)
    view.set_candidates([candidate_from(r) for r in recs])
    before = view.proxy.rowCount()
    view.tools_only.setChecked(True)
    rows = [view.proxy.index(r, 0).data(CandidateRole.ROW) for r in range(view.proxy.rowCount())]
    assert 0 < len(rows) < before
    assert all(catalog.get(r.source.candidate.model.id).can("tools") for r in rows)
    assert {r.name for r in rows} == {
        r.candidate.model.name for r in recs if r.candidate.model.can("tools")
    }
