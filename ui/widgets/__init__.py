"""Reusable widgets: the memory gauge, fit badges, the chat input and transcript, ..."""
