"""Capabilities in the catalog (tools, reasoning, vision): parsed, validated, filtered by
``candidates`` / ``recommend`` and shown by ``catalog list`` / ``recommend`` (text and JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.catalog import BUNDLED_CATALOG, Catalog, CatalogError
from launcher.cli import main
from launcher.machines import resolve_machine
from launcher.recommend import recommend


@pytest.fixture
def catalog(app_home: Path) -> Catalog:
    return Catalog.load()


def _with_capabilities(value: object) -> dict:
    raw = json.loads(BUNDLED_CATALOG.read_text(encoding="utf-8"))
    raw["models"][0]["capabilities"] = value
    return raw


def test_capabilities_are_parsed_and_checked(catalog: Catalog) -> None:
    assert catalog.get("gpt-oss-20b").can("tools", "reasoning")
    assert not catalog.get("phi-4").can("tools")
    assert catalog.get("gemma-3-27b").capabilities == ("vision",)
    with pytest.raises(CatalogError, match="capabilities must be a list of tools"):
        Catalog.from_json(_with_capabilities(["tools", "telepathy"]))
    with pytest.raises(CatalogError, match="capabilities"):
        Catalog.from_json(_with_capabilities("tools"))


def test_candidates_filter_by_capability(catalog: Catalog) -> None:
    every = {c.model.id for c in catalog.candidates()}
    tools = {c.model.id for c in catalog.candidates(capabilities=["tools"])}
    assert tools and tools < every  # some models cannot call tools: they are left out
    assert all(catalog.get(m).can("tools") for m in tools)
    assert every - tools == {m.id for m in catalog if "tools" not in m.capabilities}
    both = {c.model.id for c in catalog.candidates(capabilities=["tools", "vision"])}
    assert both and all(catalog.get(m).can("tools", "vision") for m in both)
    with pytest.raises(CatalogError, match="unknown capability"):
        catalog.candidates(capabilities=["telepathy"])


@pytest.mark.parametrize("machine", ["dgx-spark", "rtx-4090-64gb", "laptop-16gb"])
def test_recommend_for_tools_returns_only_tool_calling_models(
    catalog: Catalog, machine: str
) -> None:
    profile = resolve_machine(machine)
    everything = recommend(profile, "assistant", 8192, catalog, include_no_fit=True)
    agents = recommend(profile, "assistant", 8192, catalog, include_no_fit=True,
                       capabilities=["tools"])  # fmt: skip
    assert agents and all(r.candidate.model.can("tools") for r in agents)
    assert {r.candidate.key for r in agents} == {
        r.candidate.key for r in everything if r.candidate.model.can("tools")
    }
    assert len(agents) < len(everything)


def test_cli_shows_capabilities_and_filters(
    app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["recommend", "--machine", "dgx-spark", "--capability", "tools", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["capabilities"] == ["tools"] and out["recommendations"]
    assert all("tools" in r["capabilities"] for r in out["recommendations"])
    assert main(["catalog", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["models"]
    assert {m["model"]: m["capabilities"] for m in listed}["phi-4"] == []
    assert main(["catalog", "list", "--capability", "vision"]) == 0
    text = capsys.readouterr().out
    assert "Can" in text and "Gemma 3 27B" in text and "Phi-4 14B" not in text
    assert main(["recommend", "--machine", "dgx-spark", "--limit", "3"]) == 0
    assert "Can" in capsys.readouterr().out
