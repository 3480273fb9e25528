"""Test support shared by the core and UI suites (loopback hub, model builders, fixtures)."""
