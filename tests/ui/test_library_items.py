"""The Library's downloads as a person sees them: the selected row's bar shows its fill, a long
error can be read whole, and set-aside downloads are listed with their size."""

from __future__ import annotations

from PySide6.QtGui import QColor

from ui.models.library import DownloadModel, LocalModelModel, SetAsideModel, SetAsideRole
from ui.models.rows import DownloadRow, SetAsideRow
from ui.views.library import LibraryView
from ui.widgets.progress_delegate import bar_rect

GIB = 2**30
LONG_ERROR = (
    "org/big-GGUF/big-Q4_K_M.gguf arrived corrupted (sha256 0123456789ab… instead of "
    "ba9876543210…). The bad file was kept as /home/someone/.local/share/spark-launcher/models/"
    "org/big-GGUF/big-Q4_K_M.gguf.sha256-mismatch-1700000000 (the Library lists it as failed "
    "verification: delete it there to free 0.24 GB); run the download again to fetch it afresh."
)


def _view(qtbot, downloads: DownloadModel) -> LibraryView:
    view = LibraryView(LocalModelModel(), downloads, "/models")
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    qtbot.waitExposed(view)
    return view


def _bar_pixels(view: LibraryView, row: int) -> tuple[QColor, QColor, QColor]:
    """Colours at a quarter, at three quarters of the bar, and of the row's background."""
    lst = view.download_list
    rect = lst.visualRect(view.downloads.index(row))
    bar = bar_rect(rect, lst.fontMetrics().height())
    image = lst.viewport().grab().toImage()
    ratio = image.devicePixelRatio()
    y = int(bar.center().y() * ratio)

    def at(x: int, yy: int = y) -> QColor:
        return image.pixelColor(int(x * ratio), yy)

    background = at(rect.right() - 2, int((rect.top() + 2) * ratio))
    return at(bar.left() + bar.width() // 4), at(bar.left() + 3 * bar.width() // 4), background


def test_the_selected_download_still_shows_its_progress(qtbot) -> None:
    downloads = DownloadModel()
    for name in ("a.gguf", "b.gguf"):
        downloads.update(DownloadRow(name, name, "downloading", 2 * GIB, 4 * GIB, 8e7, 25.0))
    view = _view(qtbot, downloads)
    view.download_list.setCurrentIndex(downloads.index(0))
    assert view.download_list.selectionModel().isSelected(downloads.index(0))
    filled, empty, background = _bar_pixels(view, 0)  # selected
    assert filled != empty, "no fill at 50% on the selected row"
    assert empty != background, "the bar's unfilled part melts into the selected row"
    filled, empty, background = _bar_pixels(view, 1)  # not selected
    assert filled != empty and filled != background


def test_a_long_error_can_be_read_whole(qtbot) -> None:
    downloads = DownloadModel()
    downloads.update(DownloadRow("big", "big-Q4_K_M.gguf", "failed", GIB, 4 * GIB))
    downloads.update(
        DownloadRow("big", "big-Q4_K_M.gguf", "failed", GIB // 4, GIB, error=LONG_ERROR)
    )
    view = _view(qtbot, downloads)
    view.download_list.setCurrentIndex(downloads.index(0))
    assert view.download_details.isVisible()
    assert LONG_ERROR in view.download_details.text()
    assert view.download_details.wordWrap()
    assert downloads.index(0).data(3) == LONG_ERROR  # the row's tooltip (ToolTipRole)
    downloads.update(DownloadRow("ok", "ok.gguf", "downloading", 1, 2))
    view.download_list.setCurrentIndex(downloads.index(1))
    assert not view.download_details.isVisible()


def test_set_aside_model(qtmodeltester) -> None:
    model = SetAsideModel()
    rows = [
        SetAsideRow("/m/org/x/x.gguf.sha256-mismatch-1", "x.gguf", 241 * 2**20, "org/x"),
        SetAsideRow("/m/org/y/y.gguf.sha256-mismatch-2", "y.gguf", None),
    ]
    model.set_rows(rows)
    qtmodeltester.check(model)
    assert model.index(0).data() == "x.gguf — failed verification, 241 MiB"
    assert model.index(1).data() == "y.gguf — failed verification, —"
    assert model.index(0).data(SetAsideRole.PATH) == rows[0].path
