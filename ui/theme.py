"""Colours and small formatting helpers shared by the views, following the system theme.

Qt already follows the platform's light/dark palette; this module only picks accent colours
that read well on whichever palette is active (decided from the window colour's lightness),
plus the number formatting every view uses (the core reports raw numbers, the UI formats).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette

# Fit verdicts from the planner, as the badge shows them.
VERDICT_LABELS = {
    "full_gpu": "Full GPU",
    "partial": "Partial",
    "cpu": "CPU only",
    "no_fit": "Won't fit",
    "unknown": "Not planned",
}
_VERDICT_COLOURS_LIGHT = {
    "full_gpu": "#1a7f37",
    "partial": "#9a6700",
    "cpu": "#0969da",
    "no_fit": "#cf222e",
}
_VERDICT_COLOURS_DARK = {
    "full_gpu": "#3fb950",
    "partial": "#d29922",
    "cpu": "#58a6ff",
    "no_fit": "#f85149",
}


def dark_palette() -> QPalette:
    """A dark palette for the Fusion style (used when the user picks "dark")."""
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#202124",
        QPalette.ColorRole.WindowText: "#e8eaed",
        QPalette.ColorRole.Base: "#17181a",
        QPalette.ColorRole.AlternateBase: "#25272a",
        QPalette.ColorRole.ToolTipBase: "#303134",
        QPalette.ColorRole.ToolTipText: "#e8eaed",
        QPalette.ColorRole.PlaceholderText: "#9aa0a6",
        QPalette.ColorRole.Text: "#e8eaed",
        QPalette.ColorRole.Button: "#2d2e31",
        QPalette.ColorRole.ButtonText: "#e8eaed",
        QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Highlight: "#3b82f6",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#8ab4f8",
        # The bevel shades: the style sheet draws button borders with them (left unset they
        # keep the light palette's, bright on dark).
        QPalette.ColorRole.Light: "#4a4d52",
        QPalette.ColorRole.Midlight: "#3a3c40",
        QPalette.ColorRole.Mid: "#6b6f75",
        QPalette.ColorRole.Dark: "#141517",
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b6f75"))
    return p


def apply_theme(app: QGuiApplication, theme: str) -> None:
    """ "system" follows the platform's light/dark setting (Qt does, live); "light" and
    "dark" force one. Forcing uses the Fusion style so the palette applies everywhere."""
    hints = app.styleHints()
    if theme == "dark":
        hints.setColorScheme(Qt.ColorScheme.Dark)
        app.setStyle("Fusion")  # type: ignore[attr-defined]
        app.setPalette(dark_palette())
    elif theme == "light":
        hints.setColorScheme(Qt.ColorScheme.Light)
        app.setStyle("Fusion")  # type: ignore[attr-defined]
        app.setPalette(app.style().standardPalette())  # type: ignore[attr-defined]
    else:
        hints.unsetColorScheme()
    # Widgets under a style sheet keep the palette they were polished with; setting the
    # sheet again re-polishes them with the new palette (a live theme switch).
    for widget in getattr(app, "topLevelWidgets", list)():
        sheet = widget.styleSheet()
        if sheet:
            widget.setStyleSheet("")
            widget.setStyleSheet(sheet)


def is_dark(palette: QPalette | None = None) -> bool:
    """Whether the active palette is a dark one."""
    if palette is None:
        palette = QGuiApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def verdict_colour(verdict: str, palette: QPalette | None = None) -> QColor:
    table = _VERDICT_COLOURS_DARK if is_dark(palette) else _VERDICT_COLOURS_LIGHT
    return QColor(table.get(verdict, "#808080"))


def verdict_label(
    verdict: str, gpu_layers: int | None = None, total_layers: int | None = None
) -> str:
    """ "Full GPU", "Partial 40/80", "CPU only", "Won't fit"."""
    label = VERDICT_LABELS.get(verdict, verdict or "Unknown")
    if verdict == "partial" and gpu_layers is not None and total_layers:
        label = f"Partial {gpu_layers}/{total_layers}"
    return label


def muted_colour(palette: QPalette | None = None) -> QColor:
    """Secondary text (metrics lines, hints)."""
    if palette is None:
        palette = QGuiApplication.palette()
    return palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.PlaceholderText)


def fmt_bytes(n: float | None) -> str:
    """1536 -> '1.5 KiB'; None -> '—'."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def fmt_rate(bytes_per_s: float | None) -> str:
    return "—" if not bytes_per_s else f"{fmt_bytes(bytes_per_s)}/s"


def fmt_duration(seconds: float | None) -> str:
    """Seconds as '45 s', '3 min 05 s', '1 h 02 min'; None -> '—'."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_tokens_per_s(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} tok/s" if value < 100 else f"{value:.0f} tok/s"


STYLE_SHEET = """
QListWidget#sidebar { border: none; font-size: 11pt; padding-top: 8px; outline: 0; }
QListWidget#sidebar::item { padding: 8px 14px; border-radius: 6px; margin: 1px 6px; }
QListWidget#sidebar::item:selected {
    background: palette(highlight); color: palette(highlighted-text);
}
QLabel[role="title"] { font-size: 15pt; font-weight: 600; }
QLabel[role="hint"] { color: palette(placeholder-text); }
QLabel[role="badge"] { border-radius: 8px; padding: 1px 8px; font-weight: 600; }
QFrame#model_note { border: 1px solid palette(highlight); border-radius: 6px; }

/* Keyboard focus is visible on every control: a 2 px ring in the accent colour. Buttons get a
   full style sheet look (a ring on a native button would draw it without its bevel), the
   others a ring only while they have the focus. */
QPushButton, QToolButton {
    border: 1px solid palette(mid); border-radius: 5px; padding: 4px 12px;
    background: palette(button); color: palette(button-text);
}
QPushButton:hover, QToolButton:hover { border-color: palette(highlight); }
QPushButton:pressed, QToolButton:pressed, QToolButton:checked { background: palette(midlight); }
QPushButton:disabled, QToolButton:disabled {
    color: palette(placeholder-text); border-color: palette(midlight);
}
QPushButton:focus, QToolButton:focus {
    border: 2px solid palette(highlight); padding: 3px 11px;
}
QLineEdit:focus, QPlainTextEdit:focus, QTextEdit:focus, QAbstractSpinBox:focus,
QAbstractItemView:focus {
    border: 2px solid palette(highlight); border-radius: 3px;
}
QCheckBox:focus, QRadioButton:focus, QSlider:focus {
    border-bottom: 2px solid palette(highlight);
}
QListWidget#sidebar::item:focus { border: 2px solid palette(text); }
"""
