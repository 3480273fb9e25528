"""Every item model passes qtmodeltester, and shows what a user should read."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from launcher.chats import ConversationSummary
from launcher.hardware.doctor import Check
from launcher.library import LocalModel
from launcher.machines import load_reference
from launcher.recommend import RepoOption, recommend
from ui.models.candidates import CandidateFilterModel, CandidateModel, CandidateRole, Column
from ui.models.checks import CheckModel
from ui.models.conversations import ConversationListModel
from ui.models.library import DownloadModel, DownloadRole, LocalModelModel, download_status
from ui.models.rows import (
    CandidateRow,
    CheckRow,
    DownloadRow,
    candidate_from,
    candidate_from_option,
    check_from,
    local_model_from,
)


@pytest.fixture(scope="module")
def spark_rows() -> list[CandidateRow]:
    """Real recommendations for a DGX Spark reference machine at 32k context."""
    recs = recommend(load_reference("dgx-spark"), None, 32768, include_no_fit=True)
    return [candidate_from(r) for r in recs]


@pytest.fixture(scope="module")
def rtx4090_rows() -> list[CandidateRow]:
    recs = recommend(load_reference("rtx-4090-64gb"), None, 32768, include_no_fit=True)
    return [candidate_from(r) for r in recs]


def test_candidate_model_shows_fit_badges_and_breakdown(qtmodeltester, spark_rows) -> None:
    model = CandidateModel()
    model.set_rows(spark_rows)
    qtmodeltester.check(model)
    names = [model.index(r, Column.MODEL).data() for r in range(model.rowCount())]
    assert any("70B" in n for n in names), "a 70B fits 128 GB unified memory at 32k"
    first = model.index(0, Column.FIT).data()
    assert first in ("Full GPU", "CPU only") or first.startswith("Partial")
    memory = model.index(0, Column.MEMORY).data()
    assert "weights" in memory and "KV" in memory and "GiB" in memory
    assert "(estimated)" in model.index(0, Column.SPEED).data() or "(calibrated)" in (
        model.index(0, Column.SPEED).data()
    )
    assert model.index(0, Column.ACTION).data() == "Download"


def test_partial_offload_reads_layers_on_a_24gb_gpu(qtmodeltester, rtx4090_rows) -> None:
    model = CandidateModel()
    model.set_rows(rtx4090_rows)
    qtmodeltester.check(model)
    fits = {model.index(r, Column.FIT).data() for r in range(model.rowCount())}
    assert any(f.startswith("Partial ") and "/" in f for f in fits)
    assert "Full GPU" in fits


def test_action_column_follows_download_and_library_state(qtmodeltester, spark_rows) -> None:
    model = CandidateModel()
    model.set_rows(spark_rows[:3])
    keys = [r.key for r in spark_rows[:3]]
    model.set_states({keys[0]: ("downloading", 0.42), keys[1]: ("chat", "/m/x.gguf")})
    qtmodeltester.check(model)
    assert model.index(0, Column.ACTION).data() == "Downloading 42%"
    assert model.index(1, Column.ACTION).data() == "Chat"
    assert model.index(2, Column.ACTION).data() == "Download"
    assert model.index(1, 0).data(CandidateRole.ACTION) == "chat"


def test_filter_model_by_quant_and_fit(qtmodeltester, rtx4090_rows) -> None:
    model = CandidateModel()
    model.set_rows(rtx4090_rows)
    proxy = CandidateFilterModel()
    proxy.setSourceModel(model)
    qtmodeltester.check(proxy)
    proxy.set_quant("Q8_0")
    assert proxy.rowCount() > 0
    assert all(proxy.index(r, Column.QUANT).data() == "Q8_0" for r in range(proxy.rowCount()))
    proxy.set_quant("")
    proxy.set_hide_no_fit(True)
    assert all(proxy.index(r, Column.FIT).data() != "Won't fit" for r in range(proxy.rowCount()))


def test_a_filter_proxy_keeps_its_source_rows_after_garbage_collection(
    qtmodeltester, rtx4090_rows
) -> None:
    """The reported crash of a table-model base under a proxy, reproduced: the source model
    has no Python owner but the proxy; after a collection the proxy still reads real rows,
    sorts them and passes qtmodeltester (PySide6 keeps the source alive)."""
    proxy = CandidateFilterModel()
    source = CandidateModel()
    source.set_rows(rtx4090_rows)
    proxy.setSourceModel(source)
    del source
    gc.collect()
    proxy.sort(Column.SPEED, Qt.SortOrder.DescendingOrder)
    qtmodeltester.check(proxy)
    names = {proxy.index(r, Column.MODEL).data() for r in range(proxy.rowCount())}
    assert proxy.rowCount() == len(rtx4090_rows) and len(names) > 1


def test_local_models_mark_other_tools(qtmodeltester) -> None:
    model = LocalModelModel()
    model.set_rows(
        [
            local_model_from(
                LocalModel(
                    "qwen",
                    Path("/lm/q.gguf"),
                    (Path("/lm/q.gguf"),),
                    2**30,
                    "lmstudio",
                    False,
                    quant="Q4_K_M",
                )
            ),
            local_model_from(
                LocalModel(
                    "gemma",
                    Path("/ours/g.gguf"),
                    (Path("/ours/g.gguf"),),
                    2**28,
                    "ours",
                    True,
                    parameters=268_000_000,
                )
            ),
        ]
    )
    qtmodeltester.check(model)
    assert model.index(0, 0).data() == "gemma"  # ours first
    assert model.index(0, 3).data() == "Spark Launcher"
    assert model.index(1, 3).data() == "LM Studio (used in place)"
    assert model.index(1, 2).data() == "1.0 GiB"


def test_download_model_progress_speed_eta_and_errors(qtmodeltester) -> None:
    model = DownloadModel()
    row = DownloadRow(
        "d1",
        "Qwen3 8B",
        state="downloading",
        done_bytes=2**30,
        total_bytes=4 * 2**30,
        speed=50 * 2**20,
        eta_s=61,
    )
    model.update(row)
    model.update(DownloadRow("d2", "Broken", state="failed", error="HTTP 404: not found"))
    qtmodeltester.check(model)
    assert download_status(row) == "1.0 GiB of 4.0 GiB · 50.0 MiB/s · 1 min 01 s left"
    assert model.index(0).data(DownloadRole.FRACTION) == 0.25
    assert "Failed: HTTP 404" in model.index(1).data()
    model.update(DownloadRow("d1", "Qwen3 8B", state="done", verified=True))
    assert model.rowCount() == 2
    assert "Verified" in model.index(0).data()
    model.remove("d2")
    assert model.rowCount() == 1


def test_conversation_list_keeps_newest_first(qtmodeltester) -> None:
    model = ConversationListModel()
    model.set_items(
        [ConversationSummary("a" * 32, "old", 1.0, 2), ConversationSummary("b" * 32, "new", 2.0, 4)]
    )
    qtmodeltester.check(model)
    assert model.index(0).data() == "new"
    model.upsert(ConversationSummary("a" * 32, "old, updated", 3.0, 6))
    assert [model.index(r).data() for r in range(2)] == ["old, updated", "new"]
    model.upsert(ConversationSummary("c" * 32, "middle", 2.5, 1))
    assert [model.index(r).data() for r in range(3)] == ["old, updated", "middle", "new"]
    model.remove("b" * 32)
    assert model.rowCount() == 2


def test_check_model_shows_status_and_fix(qtmodeltester) -> None:
    model = CheckModel()
    model.set_rows(
        [
            check_from(Check("nvml", "NVML", "warn", "missing", "install")),
            CheckRow("Disk", "ok", "120 GiB free"),
        ]
    )
    qtmodeltester.check(model)
    assert model.index(0, 0).data() == "⚠"
    assert model.index(0, 3).data() == "install"
    assert model.index(1, 3).data() == "—"
    assert model.index(0, 0).data(Qt.ItemDataRole.ForegroundRole) is not None


def test_an_unplanned_hub_option_shows_why_and_no_verdict() -> None:
    opt = RepoOption(
        repo="me/x-GGUF", name="x-GGUF", quant="IQ2_XS", files=("x-IQ2_XS.gguf",),
        size_bytes=2**30, params=0, plan=None,
        reason="Not planned: only the usual quants are read from the Hub.",
    )  # fmt: skip
    row = candidate_from_option(opt)
    assert (row.key, row.verdict, row.tokens_per_s) == ("me/x-GGUF/x-IQ2_XS.gguf", "unknown", None)
    assert row.note.startswith("Not planned")
