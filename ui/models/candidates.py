"""``CandidateModel``: the Discover table (model, quant, size, fit, memory, speed, action).

Rows are ``CandidateRow``s; the action column says what the one button does for that row
(Download, a download's progress, or Chat when the file is on disk), from ``set_states``.
``CandidateFilterModel`` applies the quantisation filter, the "hide won't fit" switch and the
"tool calling" switch (only models whose capabilities include ``tools``, for agents).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from ui.models.rows import CandidateRow
from ui.models.table import ROW_ROLE, RowTableModel
from ui.theme import fmt_bytes, fmt_tokens_per_s, verdict_colour, verdict_label

Index = QModelIndex | QPersistentModelIndex


class CandidateRole(IntEnum):
    ROW = ROW_ROLE  # the CandidateRow
    VERDICT = Qt.ItemDataRole.UserRole + 2  # "full_gpu" ...
    ACTION = Qt.ItemDataRole.UserRole + 3  # "download" / "downloading" / "chat"
    SORT = Qt.ItemDataRole.UserRole + 4  # a sortable value for the column


class Column(IntEnum):
    MODEL = 0
    QUANT = 1
    SIZE = 2
    FIT = 3
    MEMORY = 4
    SPEED = 5
    ACTION = 6


HEADERS = ("Model", "Quant", "Size", "Fit", "Memory needed", "Est. speed", "")
_VERDICT_ORDER = {"full_gpu": 0, "partial": 1, "cpu": 2, "no_fit": 3}


def speed_label(row: CandidateRow) -> str:
    """'7.3 tok/s (calibrated from 5 runs)': the speed and what it rests on."""
    basis = row.basis
    if row.basis != "estimated" and row.basis_runs > 0:
        basis += f" from {row.basis_runs} run{'s' if row.basis_runs != 1 else ''}"
    return f"{fmt_tokens_per_s(row.tokens_per_s)} ({basis})"


def memory_breakdown(row: CandidateRow) -> str:
    """'5.1 GiB (weights 4.6 + KV 0.4 + compute 0.1)'."""
    if row.total_bytes is None:
        return fmt_bytes(row.size_bytes)
    parts = []
    for label, value in (("weights", row.weights_bytes), ("KV", row.kv_bytes)):
        if value is not None:
            parts.append(f"{label} {value / 2**30:.1f}")
    if row.compute_bytes is not None:
        parts.append(f"compute {row.compute_bytes / 2**30:.1f}")
    detail = f" ({' + '.join(parts)})" if parts else ""
    return f"{fmt_bytes(row.total_bytes)}{detail}"


def action_label(action: str, progress: float | None = None) -> str:
    if action == "chat":
        return "Chat"
    if action == "downloading":
        return f"Downloading {progress * 100:.0f}%" if progress is not None else "Downloading"
    return "Download"


class CandidateModel(RowTableModel[CandidateRow]):
    """Recommendations (or Hub search results) for this machine, one row each."""

    HEADERS = HEADERS

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        # key -> ("downloading", fraction) or ("chat", path)
        self._states: dict[str, tuple[str, Any]] = {}

    def set_states(self, states: dict[str, tuple[str, Any]]) -> None:
        """Update what each row's button does (download progress, ready to chat)."""
        if states == self._states:
            return
        self._states = dict(states)
        if self._rows:
            self.dataChanged.emit(
                self.index(0, Column.ACTION),
                self.index(len(self._rows) - 1, Column.ACTION),
                [Qt.ItemDataRole.DisplayRole, CandidateRole.ACTION],
            )

    def action_for(self, row: CandidateRow) -> tuple[str, Any]:
        if row.key in self._states:
            return self._states[row.key]
        if row.local_path:
            return ("chat", row.local_path)
        return ("download", None)

    def cell(self, row: CandidateRow, col: int, role: int) -> Any:
        if role == CandidateRole.VERDICT:
            return row.verdict
        if role == CandidateRole.ACTION:
            return self.action_for(row)[0]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == CandidateRole.SORT:
            return self._sort_value(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == Column.FIT:
            return verdict_colour(row.verdict)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (Column.SIZE, Column.SPEED):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, row: CandidateRow, col: int) -> str:
        if col == Column.MODEL:
            prefix = "★ " if row.starter else ""
            params = f" · {row.params}" if row.params else ""
            return f"{prefix}{row.name}{params}"
        if col == Column.QUANT:
            return row.quant
        if col == Column.SIZE:
            return fmt_bytes(row.size_bytes)
        if col == Column.FIT:
            return verdict_label(row.verdict, row.gpu_layers, row.total_layers)
        if col == Column.MEMORY:
            return memory_breakdown(row)
        if col == Column.SPEED:
            if row.verdict == "no_fit":
                return "does not fit"  # a speed for a model that cannot load would mislead
            if row.tokens_per_s is None:
                return "—"
            return speed_label(row)
        action, extra = self.action_for(row)
        return action_label(action, extra if action == "downloading" else None)

    def _sort_value(self, row: CandidateRow, col: int) -> Any:
        if col == Column.SIZE:
            return row.size_bytes or 0
        if col == Column.FIT:
            return _VERDICT_ORDER.get(row.verdict, 9)
        if col == Column.MEMORY:
            return row.total_bytes or row.size_bytes or 0
        if col == Column.SPEED:
            return -1.0 if row.verdict == "no_fit" else row.tokens_per_s or 0.0
        return self._display(row, col).lower()

    def _tooltip(self, row: CandidateRow, col: int) -> str:
        if col == Column.SPEED and row.verdict == "no_fit":
            return "It needs more memory than this machine has, so it has no speed here."
        if col == Column.SPEED:
            return {
                "estimated": "Estimated from memory bandwidth and the bytes read per token.",
                "calibrated": "Estimated, corrected by runs measured on this machine.",
                "measured": "Measured on this machine.",
            }.get(row.basis, row.basis)
        if col == Column.FIT and row.verdict == "unknown":
            return "A Hub result: the fit is planned from the file's header once you pick it."
        if col == Column.FIT and row.verdict == "partial":
            return (
                f"{row.gpu_layers} of {row.total_layers} layers on the GPU; the rest runs "
                "on the CPU (slower)."
            )
        return f"{row.repo}/{row.filename}" + (f"\n{row.note}" if row.note else "")


class CandidateFilterModel(QSortFilterProxyModel):
    """Quantisation filter, "hide what won't fit" and "tool calling" over a ``CandidateModel``."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._quant = ""
        self._hide_no_fit = False
        self._tools_only = False
        self.setSortRole(CandidateRole.SORT)

    def set_quant(self, quant: str) -> None:
        self._quant = quant
        self.invalidate()

    def set_hide_no_fit(self, hide: bool) -> None:
        self._hide_no_fit = hide
        self.invalidate()

    def set_tools_only(self, on: bool) -> None:
        """Keep only models that call tools natively (rows without known capabilities go)."""
        self._tools_only = on
        self.invalidate()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        if not isinstance(model, CandidateModel):
            return True
        row = model.row_at(source_row)
        if self._quant and row.quant.upper() != self._quant.upper():
            return False
        if self._tools_only and "tools" not in row.capabilities:
            return False
        return not (self._hide_no_fit and row.verdict == "no_fit")
