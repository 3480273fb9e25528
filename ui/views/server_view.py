"""``ServerView``: the local API switch (off by default), its address, port and key, and a log.

The core does the work (``launcher.server``): ``ServerController`` owns the running
``LocalApiServer`` over the app's ``ModelRegistry`` - the same shared model hosts the chat
uses, so API requests and the chat take turns - and the ``RequestLog``. The view only edits
the settings, flips the switch and renders. It polls the log and the registry on a timer at
4 Hz (the server's threads never touch widgets, and a busy API cannot flood the GUI).

The HTTP server module is imported only when the switch is turned on, so the view costs
nothing at start-up.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from launcher.errors import LauncherError
from launcher.server.config import DEFAULT_HOST, DEFAULT_PORT, ApiConfig
from launcher.server.requestlog import RequestLog
from ui.widgets.server_log import RequestLogModel

POLL_INTERVAL_MS = 250  # 4 Hz: the log and model list refresh at most this often


class ServerController(QObject):
    """Starts and stops the local API over ``registry``; keeps the request log across runs."""

    state_changed = Signal(bool, str)  # running, a message for the status line

    def __init__(self, registry: Any, request_log: RequestLog | None = None) -> None:
        super().__init__()
        self.registry = registry
        self.log = request_log if request_log is not None else RequestLog()
        self.server: Any = None

    @property
    def running(self) -> bool:
        return self.server is not None

    @property
    def url(self) -> str:
        return str(self.server.url) if self.server is not None else ""

    def start(
        self, host: str, port: int, api_key: str | None, cors_origins: tuple[str, ...] = ()
    ) -> bool:
        """Listen now (binding is instant); False with the core's message when refused."""
        if self.server is not None:
            return True
        from launcher.server.httpd import LocalApiServer

        try:
            server = LocalApiServer(
                self.registry,
                host=host,
                port=port,
                api_key=api_key,
                request_log=self.log,
                cors_origins=cors_origins,
            )
            server.start()
        except LauncherError as exc:
            self.state_changed.emit(False, str(exc))
            return False
        self.server = server
        key = "clients must send the API key" if api_key else "no API key"
        self.state_changed.emit(True, f"Serving at {server.url} ({key}).")
        return True

    def stop(self) -> None:
        """Stop listening; replies in flight are cancelled (each ends within one token)."""
        server, self.server = self.server, None
        if server is None:
            return
        server.stop(timeout=5.0)
        self.state_changed.emit(False, "The local API is off.")


class ServerView(QWidget):
    """The switch, the address/port/key fields, the loaded models and the request log.

    Starts from ``config`` (what the app saved) and emits ``config_changed`` with what to save
    when the user turns the API on (successfully) or off; closing the app while it serves
    leaves ``serve_on_launch`` on, so the next launch serves again (:meth:`serve_if_configured`).
    """

    config_changed = Signal(object)  # ApiConfig

    def __init__(
        self,
        registry: Any,
        controller: ServerController | None = None,
        parent: QWidget | None = None,
        config: ApiConfig | None = None,
    ) -> None:
        super().__init__(parent)
        self.registry = registry
        self.controller = controller or ServerController(registry)
        self.initial_config = config = config or ApiConfig()
        self.log_model = RequestLogModel(self)
        self._seen = (-1, -1)

        title = QLabel("Local API")
        title.setProperty("role", "title")
        intro = QLabel(
            "Serve the models loaded in Spark Launcher over the OpenAI-compatible API, for "
            "local agents, coding assistants and IDE plugins. Requests take turns with your "
            "chat on the same model."
        )
        intro.setWordWrap(True)
        intro.setProperty("role", "hint")

        self.switch = QCheckBox("Serve the loaded models")
        self.switch.setObjectName("server_switch")
        box = QGroupBox("Listen on")
        form = QFormLayout(box)
        self.host_field = QLineEdit(config.host)
        self.host_field.setToolTip(
            "127.0.0.1: only this machine. Any other address (0.0.0.0: every network) lets "
            "other machines connect and needs an API key."
        )
        self.port_field = QSpinBox()
        self.port_field.setRange(0, 65535)
        self.port_field.setValue(config.port)
        self.key_field = QLineEdit(config.api_key or "")
        self.key_field.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_field.setPlaceholderText("required unless the address is 127.0.0.1")
        form.addRow("Address:", self.host_field)
        form.addRow("Port:", self.port_field)
        form.addRow("API key:", self.key_field)
        self.status_label = QLabel("The local API is off.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(
            self.status_label.textInteractionFlags() | Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.copy_button = QPushButton("Copy URL")
        self.copy_button.setObjectName("copy_url")
        self.copy_button.setToolTip("Copy the base URL clients use (…/v1) to the clipboard.")
        self.copy_button.setEnabled(False)
        self.models_label = QLabel("")
        self.models_label.setWordWrap(True)
        self.models_label.setProperty("role", "hint")

        self.table = QTableView()
        self.table.setModel(self.log_model)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        for col in (0, 1, 2, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(6, QHeaderView.ResizeMode.ResizeToContents)
        self.clear_button = QPushButton("Clear log")
        log_row = QHBoxLayout()
        log_title = QLabel("Requests")
        log_title.setProperty("role", "subtitle")
        log_row.addWidget(log_title, 1)
        log_row.addWidget(self.clear_button)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(intro)
        switch_row = QHBoxLayout()
        switch_row.addWidget(self.switch)
        switch_row.addStretch(1)
        layout.addLayout(switch_row)
        layout.addWidget(box)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(status_row)
        layout.addWidget(self.models_label)
        layout.addLayout(log_row)
        layout.addWidget(self.table, 1)

        self.switch.toggled.connect(self._on_switch_toggled)
        self.clear_button.clicked.connect(self.controller.log.clear)
        self.copy_button.clicked.connect(self.copy_url)
        self.controller.state_changed.connect(self._on_state_changed)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    # ------------------------------------------------------------------ intents
    def config(self, serving: bool) -> ApiConfig:
        """The fields as an ``ApiConfig`` (``serving``: serve again at the next launch)."""
        return ApiConfig(
            host=self.host_field.text().strip() or DEFAULT_HOST,
            port=self.port_field.value(),
            api_key=self.key_field.text().strip() or None,
            serve_on_launch=serving,
            cors_origins=self.initial_config.cors_origins,  # edited in local_api.json only
        )

    def serve_if_configured(self) -> None:
        """Turn the API on when it was on as the app last closed (a failure is shown)."""
        if self.initial_config.serve_on_launch and not self.controller.running:
            self.switch.setChecked(True)

    def _on_switch_toggled(self, on: bool) -> None:
        config = self.config(serving=on)
        if on:
            if not self.controller.start(
                config.host, config.port, config.api_key, config.cors_origins
            ):
                self.switch.blockSignals(True)
                self.switch.setChecked(False)
                self.switch.blockSignals(False)
                return
        else:
            self.controller.stop()
        self.config_changed.emit(config)

    def copy_url(self) -> None:
        """Put the served base URL on the clipboard (for an agent's or IDE's settings)."""
        url = self.controller.url
        if url:
            QGuiApplication.clipboard().setText(url)
            self.copy_button.setText("Copied")
            button = self.copy_button  # the context: no callback once the view is gone
            QTimer.singleShot(1500, button, lambda: button.setText("Copy URL"))

    def _on_state_changed(self, running: bool, message: str) -> None:
        self.status_label.setText(message)
        self.copy_button.setEnabled(running)
        for field in (self.host_field, self.port_field, self.key_field):
            field.setEnabled(not running)
        self.refresh()

    # ------------------------------------------------------------------ rendering
    def refresh(self) -> None:
        """Re-read the log and the model list when they changed (called at 4 Hz)."""
        versions = (self.controller.log.version, self.registry.version)
        if versions == self._seen:
            return
        self._seen = versions
        self.log_model.set_records(self.controller.log.records())
        names = self.registry.names()
        if names:
            self.models_label.setText("Models served: " + ", ".join(names))
        else:
            self.models_label.setText(
                "No model is loaded: load one in Chat and it is served under its file name."
            )

    def shutdown(self) -> None:
        """Stop the poll timer and the server (the app calls this before ending its hosts)."""
        self.timer.stop()
        self.controller.stop()


def render_screenshot(out: str, model_path: str) -> None:
    """Render the view serving a real model after a few real requests (``docs/server.png``)."""
    import http.client
    import json
    import socket

    from PySide6.QtWidgets import QApplication

    from launcher.engine import EngineClient, EngineParams
    from launcher.server.pool import ModelRegistry
    from ui.theme import STYLE_SHEET

    app = QApplication.instance() or QApplication([])
    registry = ModelRegistry()
    model = registry.share(EngineClient())
    model.load(model_path, EngineParams(n_ctx=2048))
    view = ServerView(registry)
    view.setStyleSheet(STYLE_SHEET)  # the main window's, which this view normally inherits
    with socket.socket() as probe:  # the default port when free, so the picture looks usual
        free = probe.connect_ex(("127.0.0.1", DEFAULT_PORT)) != 0
    view.port_field.setValue(DEFAULT_PORT if free else 0)
    view.resize(1100, 640)
    view.show()
    view.switch.setChecked(True)
    port = view.controller.server.port
    bodies = [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Say hello."}]}),
        ("/v1/completions", {"prompt": "1, 2, 3, 4,", "max_tokens": 16, "stream": True}),
        ("/v1/chat/completions", {"messages": "not a list"}),
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "Name three colours."}],
                "max_tokens": 24,
                "stream": True,
            },
        ),
    ]
    try:
        for path, body in bodies:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            conn.getresponse().read()
            conn.close()
        view.refresh()
        app.processEvents()
        view.grab().save(out)
    finally:
        view.shutdown()
        model.unload()


if __name__ == "__main__":
    import sys

    render_screenshot(
        sys.argv[1] if len(sys.argv) > 1 else "docs/server.png",
        sys.argv[2] if len(sys.argv) > 2 else ".cache/models/gemma-3-270m-q4_k_m.gguf",
    )
