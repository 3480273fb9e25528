"""One controller per feature: it runs the feature's work on a task thread through the core
and hands the results to its view; ``ui/app.py`` only builds and wires them."""
