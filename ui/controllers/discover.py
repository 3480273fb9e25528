"""Discover: the catalog ranked for this machine, Hub search, and a Hub repository's files
planned from their headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from ui.models.rows import CandidateRow, candidate_from, candidate_from_option
from ui.models.wording import plural
from ui.views.discover import DiscoverView
from ui.workers import TaskRunner


class DiscoverController(QObject):
    """Fills Discover's list from the core on task threads; ``candidates_changed`` tells the
    app to refresh each row's state (on disk, downloading) and the recommendation."""

    candidates_changed = Signal()

    def __init__(
        self,
        view: DiscoverView,
        local_tasks: TaskRunner,
        network_tasks: TaskRunner,
        *,
        profile: Callable[[], Any],
        calibration: Callable[[], Any],
        catalog: Callable[[], Any],
    ) -> None:
        super().__init__()
        self.view = view
        self.local_tasks = local_tasks
        self.network_tasks = network_tasks
        self.profile = profile
        self.calibration = calibration
        self.catalog = catalog
        self.candidates: list[CandidateRow] = []  # the catalog's ranking, as last shown
        self._expanding: set[str] = set()  # repositories whose headers are being read
        view.filters_changed.connect(self.refresh)
        view.search_requested.connect(self.search)
        view.expand_requested.connect(self.expand)

    def refresh(self, use: str, context: int) -> None:
        """Rank the catalog for this machine (local task thread)."""
        profile = self.profile()
        if profile is None:
            return
        self.view.set_busy("Ranking the catalog for this machine…")

        calibration = self.calibration()

        def work() -> list[CandidateRow]:
            from launcher.recommend import recommend

            recs = recommend(
                profile,
                use or None,
                context,
                catalog=self.catalog(),
                include_no_fit=True,
                calibration=calibration,
            )
            return [candidate_from(r) for r in recs]

        self.local_tasks.submit(work, self._on_recommendations, self.view.set_busy)

    def _on_recommendations(self, rows: list[CandidateRow]) -> None:
        self.candidates = rows
        fits = plural(sum(r.verdict != "no_fit" for r in rows), "catalog model")
        self.view.set_candidates(
            rows,
            f"{fits} {'fits' if fits.startswith('1 ') else 'fit'} this machine "
            "(offline catalog; estimates from each file's header).",
        )
        self.candidates_changed.emit()

    def search(self, query: str) -> None:
        """Search the Hub (network thread); results are repositories to expand."""
        self.view.set_busy(f"Searching Hugging Face for “{query}”…")

        def work() -> list[CandidateRow]:
            from launcher import hub

            results = hub.search_models(query, limit=30)
            return [
                CandidateRow(
                    key=f"{r.repo_id}/",
                    name=r.repo_id,
                    repo=r.repo_id,
                    filename="",
                    quant="",
                    size_bytes=None,
                    verdict="unknown",
                    note=f"{r.downloads:,} downloads · {r.likes} likes"
                    + (" · gated: needs a token" if r.gated else ""),
                    source=r,
                )
                for r in results
            ]

        self.network_tasks.submit(
            work,
            lambda rows: self.view.set_candidates(
                rows,
                f"{plural(len(rows), 'repository', 'repositories')} on Hugging Face. "
                "Pick one to see its files.",
            ),
            lambda message: self.view.show_search_failed(query, message),
        )

    def expand(self, row: CandidateRow) -> None:
        """Replace a Hub search result by its GGUF files, each planned from its header."""
        profile = self.profile()
        if row.repo in self._expanding or profile is None:
            return
        self._expanding.add(row.repo)
        context, calibration = self.view.context, self.calibration()
        self.view.set_busy(f"Reading the GGUF headers of {row.repo}…")

        def work() -> list[CandidateRow]:
            from launcher.recommend import plan_repo

            options = plan_repo(row.repo, profile, context, calibration)
            return [candidate_from_option(o) for o in options]

        def done(files: list[CandidateRow]) -> None:
            self._expanding.discard(row.repo)
            rows = self.view.model.rows()
            at = next((i for i, r in enumerate(rows) if r.key == row.key), None)
            if at is None:
                return  # the list changed meanwhile (another search)
            rows[at : at + 1] = files
            self.view.set_candidates(
                rows, f"{row.repo}: {plural(len(files), 'GGUF file')}, planned for this machine."
            )
            self.candidates_changed.emit()
            if files:
                self.view.select_key(files[0].key)

        def failed(message: str) -> None:
            self._expanding.discard(row.repo)
            self.view.set_busy(message)

        self.network_tasks.submit(work, done, failed)
