"""The model repository: which versions of which models are served, reloaded from disk while serving.

PATH is one export folder (model = folder name, version 1) or TF Serving's layout PATH/NAME/VERSION/.
A background thread polls the disk: a version folder that appears is loaded once its files stopped
changing for one poll; the highest available version is the default; a version that fails to load, or
whose model file contradicts its signature.json or fails on a batch built from it (version_check.py), is
reported (state END with its error) and skipped while the others keep serving; a folder that disappears
is unloaded. Readers on the event loop never lock: each model's table is replaced, never mutated.
"""
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ember.serve.batching import Batcher
from ember.serve.errors import NotFound
from ember.serve.runtime import load_runtime
from ember.serve.text import TextClassifierIO
from ember.serve.untrusted import decimal_int
from ember.serve.version_check import check_version, tied_dimensions
from ember.signature import SIGNATURE_FILE, load_signature

log = logging.getLogger("ember.serve")
_UNLOAD_GRACE_SECONDS = 30.0  # requests already holding a removed version finish on it


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # TF Serving's states: AVAILABLE, or END for a version that failed to load
    error: str = ""


class ServedVersion:
    """One loaded version: signature, runtime, its batcher and metrics."""

    def __init__(self, name: str, version: int, folder: Path, config, metrics):
        model_config = config.for_model(name)
        self.name, self.version, self.folder, self.config = name, version, folder, model_config
        self.signature = load_signature(folder)
        self.runtime = load_runtime(folder, self.signature, model_config.runtime, model_config.intra_op_threads,
                                    torch_threads=config.intra_op_threads)
        check_version(self.signature, self.runtime)  # before anything goes live: raises InconsistentVersion
        self.tied_dimensions = tied_dimensions(self.signature, self.runtime)
        self.text = TextClassifierIO(folder, self.signature) if self.signature.tokenizer else None
        self.metrics = metrics.for_version(name, version)
        self.batcher = Batcher(self.runtime.run, model_config.batching, on_batch=self.metrics.batch_size.observe)
        self.metrics.queue_depth.set_function(lambda: self.batcher.queued_rows)


@dataclass(frozen=True)
class ModelTable:
    versions: dict = field(default_factory=dict)  # version -> ServedVersion
    statuses: dict = field(default_factory=dict)  # version -> VersionStatus
    default: ServedVersion | None = None


class ModelRepository:
    def __init__(self, path, config, metrics):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"model path {self.path} is not a folder (expected an export folder "
                                    f"with signature.json, or a repository NAME/VERSION/)")
        self.config, self._metrics = config, metrics
        self.models = {}  # name -> ModelTable
        self._attempted = {}  # (name, version) -> fingerprint of the files last loaded or tried
        self._seen = {}  # (name, version) -> fingerprint at the previous poll
        self._stop = threading.Event()
        self._thread = None

    # -- reading (event loop) --------------------------------------------------------------------------
    def get(self, name: str, version: int | None = None, label: str | None = None) -> ServedVersion:
        table = self.models.get(name)
        if table is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFound(f"model {name!r} not found; models served: {known}")
        if label is not None:
            labels = self.config.for_model(name).version_labels
            if label not in labels:
                raise NotFound(f"model {name!r} has no version label {label!r}; labels: {sorted(labels) or 'none'}")
            version = labels[label]
        if version is None:
            if table.default is None:
                raise NotFound(f"model {name!r} has no available version; {self._describe(table)}")
            return table.default
        served = table.versions.get(version)
        if served is None:
            raise NotFound(f"model {name!r} version {version} is not available; {self._describe(table)}")
        return served

    def statuses(self, name: str, version: int | None = None, label: str | None = None) -> list:
        if version is not None or label is not None:
            served = self.get(name, version, label)
            return [self.models[name].statuses[served.version]]
        if name not in self.models:
            self.get(name)  # raises the 404 with the list of models
        table = self.models[name]
        return [table.statuses[v] for v in sorted(table.statuses, reverse=True)]

    def ready(self) -> bool:
        return bool(self.models) and all(t.default is not None for t in self.models.values())

    @staticmethod
    def _describe(table: ModelTable) -> str:
        states = [f"{s.version}: {s.state}" + (f" ({s.error})" if s.error else "")
                  for s in sorted(table.statuses.values(), key=lambda s: s.version)]
        return "versions " + ("; ".join(states) if states else "none")

    # -- loading (startup and the polling thread) ------------------------------------------------------
    def load(self):
        """First scan: load everything on disk now, without waiting for files to settle."""
        self._poll(settle=False)
        if not self.models:
            raise FileNotFoundError(f"no models in {self.path}: expected signature.json there, or folders "
                                    f"NAME/VERSION/ (VERSION a number) each holding an export")

    def start_polling(self):
        if self.config.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, name="ember-repository", daemon=True)
            self._thread.start()

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for table in self.models.values():
            for served in table.versions.values():
                served.batcher.close()

    def _poll_forever(self):
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self._poll(settle=True)
            except Exception:  # a bad scan must never stop the polling (or the server)
                log.exception("scanning %s failed", self.path)

    def _scan(self) -> dict:
        """{name: {version: folder}} of what is on disk now."""
        if (self.path / SIGNATURE_FILE).is_file():
            return {self.path.resolve().name: {1: self.path}}
        found = {}
        for model_dir in sorted(p for p in self.path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            # decimal_int: str.isdigit() also takes "²", which int() refuses (and the scan would fail)
            versions = {decimal_int(v.name): v for v in model_dir.iterdir()
                        if v.is_dir() and decimal_int(v.name) is not None}
            if versions:
                found[model_dir.name] = versions
        return found

    def _poll(self, settle: bool):
        on_disk, models = self._scan(), dict(self.models)
        for name in sorted(set(on_disk) | set(models)):
            versions = on_disk.get(name, {})
            table = models.get(name, ModelTable())
            versions_now, statuses_now = dict(table.versions), dict(table.statuses)
            for version, folder in versions.items():
                key = (name, version)
                fingerprint = _fingerprint(folder)
                settled = not settle or self._seen.get(key) == fingerprint
                self._seen[key] = fingerprint
                if version in versions_now or self._attempted.get(key) == fingerprint or not settled:
                    continue
                self._attempted[key] = fingerprint
                try:
                    versions_now[version] = ServedVersion(name, version, folder, self.config, self._metrics)
                    statuses_now[version] = VersionStatus(version, "AVAILABLE")
                    log.info("loaded %s version %d from %s", name, version, folder)
                except Exception as error:  # a broken version is reported, never fatal
                    statuses_now[version] = VersionStatus(version, "END", f"{type(error).__name__}: {error}")
                    log.error("could not load %s version %d from %s: %s", name, version, folder, error)
            for version in set(statuses_now) - set(versions):
                removed = versions_now.pop(version, None)
                statuses_now.pop(version)
                self._attempted.pop((name, version), None)
                if removed is not None:
                    log.info("unloaded %s version %d (its folder is gone)", name, version)
                    timer = threading.Timer(_UNLOAD_GRACE_SECONDS, removed.batcher.close)
                    timer.daemon = True
                    timer.start()
            if not statuses_now:
                models.pop(name, None)
                continue
            default = versions_now[max(versions_now)] if versions_now else None
            models[name] = ModelTable(versions_now, statuses_now, default)
        self.models = models


def _fingerprint(folder: Path) -> tuple:
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()))
    except OSError:  # the folder changed under us; try again next poll
        return ()
