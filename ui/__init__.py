"""Spark Launcher desktop UI (PySide6). Depends on ``launcher``; the core never imports this."""
