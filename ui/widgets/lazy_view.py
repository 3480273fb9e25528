"""``LazyView``: a placeholder that builds its real view the first time it is shown.

Views with heavy imports (the comparison view pulls in its whole core) would delay the
window's first paint; wrapped in a ``LazyView`` they cost nothing until the user opens them.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget


class LazyView(QWidget):
    """Holds ``factory()``'s widget once built (``widget`` is ``None`` until then)."""

    def __init__(self, factory: Callable[[], QWidget], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._factory = factory
        self.widget: QWidget | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    def build(self) -> QWidget:
        """Build the real view now (idempotent)."""
        if self.widget is None:
            self.widget = self._factory()
            self._layout.addWidget(self.widget)
        return self.widget

    def showEvent(self, event: QShowEvent) -> None:
        self.build()
        super().showEvent(event)
