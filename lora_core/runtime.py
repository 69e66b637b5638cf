"""What a process needs to serve requests: settings, a migrated database engine and the object store."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from lora_core.db import make_engine, migrate
from lora_core.settings import Settings, get_settings
from lora_core.storage import ObjectStore, make_store


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: ObjectStore

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)


def build_runtime(settings: Settings | None = None, *, serves_browsers: bool = True) -> Runtime:
    """Connect, bring the schema to head and open the store (storage.make_store). Called once per process (pages
    cache it)."""
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings)
    migrate(engine)
    return Runtime(settings=settings, engine=engine, store=make_store(settings, serves_browsers=serves_browsers))


_runtime_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process-wide runtime, built on first use; pages, routes and the lifespan all share it."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime()
        return _runtime


def reset_runtime() -> None:
    """Forget the process-wide runtime (tests that change LORA_* settings between apps)."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.engine.dispose()
        _runtime = None
