"""The window's views (Discover, Library, Chat, Doctor & settings): widgets that only render.

Each view takes its models and services in its constructor and reports user intent through
signals (``download_requested``, ``chat_requested``, ...); ``ui/app.py`` wires them together.
"""
