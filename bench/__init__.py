"""Benchmarks. Each module ``bench/<name>.py`` defines ``TITLE`` and ``run() -> str``.

``run`` measures (with its own same-run reference: native llama.cpp, the plain Hugging Face
client, a bare Qt window, ...) and returns the Markdown body of its section: a table of
figures and ratios. ``python -m bench [NAME ...]`` runs them and rewrites BENCHMARKS.md,
keeping the sections of benchmarks it did not run. Timed assertions never go in the tests.
"""
