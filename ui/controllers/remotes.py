"""Doctor & settings → Remote servers: list their models, add (checked first), remove."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from launcher.paths import AppPaths
from ui.models.rows import LocalModelRow
from ui.models.wording import plural
from ui.views.remotes import RemoteRow, RemoteServersBox
from ui.workers import TaskRunner


class RemotesController(QObject):
    """Runs the remote servers tab's actions on the network task thread; the models the
    servers offer come out of ``models_listed`` as rows for the model pickers."""

    models_listed = Signal(list)  # list[LocalModelRow]: remote:NAME/MODEL rows

    def __init__(self, paths: AppPaths, tasks: TaskRunner, view: RemoteServersBox) -> None:
        super().__init__()
        self.paths = paths
        self.tasks = tasks
        self.view = view
        view.add_requested.connect(self.add)
        view.remove_requested.connect(self.remove)

    def refresh(self) -> None:
        """Ask every saved remote server for its models (network thread); they join the
        model pickers as ``remote:NAME/MODEL`` rows, and Doctor & settings lists the servers."""
        paths = self.paths

        def work() -> tuple[list[RemoteRow], list[LocalModelRow]]:
            from launcher.engine.remote import list_models
            from launcher.remotes import RemoteStore, make_spec

            servers, models = [], []
            for remote in RemoteStore(paths).all():
                try:
                    ids = [m["id"] for m in list_models(remote)]
                except Exception as exc:  # one server down must not hide the others
                    servers.append(
                        RemoteRow(remote.name, remote.base_url, remote.has_key, str(exc))
                    )
                    continue
                status = f"{len(ids)} model{'s' * (len(ids) != 1)}"
                servers.append(RemoteRow(remote.name, remote.base_url, remote.has_key, status))
                for model_id in ids:
                    models.append(
                        LocalModelRow(
                            path=make_spec(remote.name, model_id),
                            name=f"{model_id} @{remote.name}",
                            size_bytes=None,
                            source=f"Remote: {remote.name}",
                            ours=False,
                        )
                    )
            return servers, models

        def done(result: tuple[list[RemoteRow], list[LocalModelRow]]) -> None:
            servers, models = result
            self.view.set_remotes(servers)
            self.models_listed.emit(models)

        self.tasks.submit(work, done, self.view.show_message)

    def add(self, name: str, url: str, api_key: str) -> None:
        """Check the server answers (with this key), then save it; the key is never shown."""
        paths = self.paths

        def work() -> str:
            from launcher.engine.remote import list_models
            from launcher.remotes import RemoteStore

            store = RemoteStore(paths)
            remote = store.make(name, url, api_key or None)
            count = len(list_models(remote))
            store.save(remote)
            return (
                f"Saved {remote.name} ({remote.base_url}): {plural(count, 'model')} to chat with."
            )

        def done(message: str) -> None:
            self.view.show_message(message)
            self.refresh()

        self.tasks.submit(work, done, self.view.show_message)

    def remove(self, name: str) -> None:
        paths = self.paths

        def work() -> str:
            from launcher.remotes import RemoteStore

            RemoteStore(paths).remove(name)
            return f"Removed {name}."

        def done(message: str) -> None:
            self.view.show_message(message)
            self.refresh()

        self.tasks.submit(work, done, self.view.show_message)
