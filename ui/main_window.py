"""The main window: a sidebar of views, the current view, and the memory gauge always visible.

``MainWindow`` only lays out what it is given: ``ui/app.py`` builds the views and the gauge
and adds them, so tests can build a window from fakes. Adding a view is one line:
``window.add_view("compare", "Compare", CompareView(...))``.

Fit: every view sits in a frameless scroll area, so no view's minimum size can make the
window larger than the screen (a long path or a tall form scrolls instead of pushing the
window's buttons off a 1366x768 laptop); the views are laid out so that at 1280x720 none needs
to scroll (``tests/ui/test_fit_and_keyboard.py``).

Keyboard: Ctrl+1 … Ctrl+9 show the views in sidebar order, Ctrl+Q closes the window (and the
app); ``add_shortcut`` adds window-wide ones (the app adds Ctrl+N and Ctrl+L for the chat).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QPaintEvent, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ui.theme import STYLE_SHEET


class _PageLayout(QVBoxLayout):
    """Holds a view in its scroll area, without height-for-width.

    A scroll area sizes a height-for-width widget (any with word-wrapped labels) by its
    *preferred* height at the viewport's width, so a view would scroll although it fits;
    without it the view scrolls only when the viewport is below its minimum size.
    """

    def hasHeightForWidth(self) -> bool:
        return False


SIDEBAR_MIN_WIDTH = 150
# Left and right of a sidebar title: the item's padding, margin and focus border in the style
# sheet, and some slack (a title must never be elided).
SIDEBAR_ITEM_EXTRA = 2 * 14 + 2 * 6 + 2 * 2 + 16

# The smallest the window may get: below this the views would only be scroll bars.
MINIMUM_SIZE = QSize(760, 480)


class MainWindow(QMainWindow):
    """Top-level window titled "Spark Launcher"."""

    view_changed = Signal(str)  # key of the view now shown
    first_painted = Signal()  # once: the app starts its background work after this

    def __init__(
        self,
        gauge: QWidget | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle("Spark Launcher")
        self.setStyleSheet(STYLE_SHEET)
        self._on_close = on_close
        self._keys: list[str] = []
        self._views: list[QWidget] = []
        self.setMinimumSize(MINIMUM_SIZE)
        self._painted = False

        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(SIDEBAR_MIN_WIDTH)
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setFrameShape(QFrame.Shape.NoFrame)
        self.sidebar.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.stack = QStackedWidget()
        self.gauge = gauge or QLabel("Memory gauge unavailable")
        self.gauge.setObjectName("memory_gauge")

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 6, 6, 0)
        right_layout.addWidget(self.stack, 1)
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 6)
        outer.setSpacing(4)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.sidebar)
        row.addWidget(right, 1)
        outer.addLayout(row, 1)
        self._gauge_box = QHBoxLayout()
        self._gauge_box.setContentsMargins(10, 0, 10, 0)
        self._gauge_box.addWidget(self.gauge)
        outer.addLayout(self._gauge_box)
        self.setCentralWidget(central)
        self.sidebar.currentRowChanged.connect(self._on_row_changed)
        self.add_shortcut("Ctrl+Q", self.close)

    def add_shortcut(self, keys: str, callback: Callable[[], object]) -> QShortcut:
        """A shortcut that works wherever the focus is in this window."""
        shortcut = QShortcut(QKeySequence(keys), self)
        shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        shortcut.activated.connect(callback)
        return shortcut

    def set_gauge(self, gauge: QWidget) -> None:
        """Replace the gauge (the app puts the live one in once the window has painted)."""
        old, self.gauge = self.gauge, gauge
        gauge.setObjectName("memory_gauge")
        self._gauge_box.replaceWidget(old, gauge)
        old.deleteLater()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()

    def add_view(self, key: str, title: str, widget: QWidget) -> None:
        """Add a view under ``title`` in the sidebar; the first one added is shown first."""
        item = QListWidgetItem(title)
        item.setData(Qt.ItemDataRole.UserRole, key)
        self.sidebar.addItem(item)
        self._fit_sidebar()
        page = QScrollArea()
        page.setObjectName(f"page_{key}")
        page.setFrameShape(QFrame.Shape.NoFrame)
        page.setWidgetResizable(True)
        holder = QWidget()
        holder_layout = _PageLayout(holder)
        holder_layout.setContentsMargins(0, 0, 0, 0)
        holder_layout.addWidget(widget)
        page.setWidget(holder)
        self.stack.addWidget(page)
        self._views.append(widget)
        self._keys.append(key)
        number = len(self._keys)
        if number <= 9:
            item.setToolTip(f"{title} (Ctrl+{number})")
            self.add_shortcut(f"Ctrl+{number}", lambda: self.show_view(key))
        if len(self._keys) == 1:
            self.sidebar.setCurrentRow(0)

    def _fit_sidebar(self) -> None:
        """As wide as the longest title (in the sidebar's font), no wider: the views get the
        rest, which matters on a 1366x768 screen at 150 %."""
        self.sidebar.ensurePolished()
        metrics = self.sidebar.fontMetrics()
        widest = max(
            metrics.horizontalAdvance(self.sidebar.item(i).text())
            for i in range(self.sidebar.count())
        )
        self.sidebar.setFixedWidth(max(SIDEBAR_MIN_WIDTH, widest + SIDEBAR_ITEM_EXTRA))

    def show_view(self, key: str) -> None:
        self.sidebar.setCurrentRow(self._keys.index(key))

    def view(self, key: str) -> QWidget:
        return self._views[self._keys.index(key)]

    def page(self, key: str) -> QScrollArea:
        """The scroll area ``key``'s view sits in."""
        page = self.stack.widget(self._keys.index(key))
        assert isinstance(page, QScrollArea)
        return page

    def current_view(self) -> str:
        row = self.sidebar.currentRow()
        return self._keys[row] if 0 <= row < len(self._keys) else ""

    def view_keys(self) -> list[str]:
        return list(self._keys)

    def _on_row_changed(self, row: int) -> None:
        if 0 <= row < len(self._keys):
            self.stack.setCurrentIndex(row)
            self.view_changed.emit(self._keys[row])

    def closeEvent(self, event: QCloseEvent) -> None:
        # Workers and model hosts end here, in their fixed order, before the window goes.
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback()
        super().closeEvent(event)
