"""Make ``lm_eval --model aunet`` work: entry-point discovery of lm-eval models, which lm-eval 0.4.13 lacks.

lm-eval 0.4.13 finds models only in its own registry (``lm_eval.api.registry.model_registry``), filled by
``lm_eval/models/__init__.py`` and by ``@register_model`` decorators; it does not read package entry points. This
package declares its model the standard way, as the entry point ``aunet`` in the group ``lm_eval.models``
(``pyproject.toml``), and installs one line into site-packages, ``aunet-lm-eval.pth``, that Python runs at start-up:
it calls :func:`install`, which adds a tiny import hook. The hook does nothing until some code imports
``lm_eval.models`` (lm-eval's CLI does, on its first model lookup); right after that module has run, the hook
registers every ``lm_eval.models`` entry point that lm-eval does not know yet as a *lazy* placeholder
(``"aunet.evaluation.lm:AUNetLM"``), so nothing of ours is imported unless ``--model aunet`` is asked for. Start-up
cost for every other Python program: importing this module (no torch, no lm_eval) and one dictionary lookup per
import.

Without the ``.pth`` line (an install that skipped it), call :func:`register` before using lm-eval from Python, or
run lm-eval through ``python -m aunet.evaluation.lm_eval_cli`` (the same CLI with the model registered).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and importlib.abc cost start-up time in every process: annotations only
    import importlib.machinery
    from types import ModuleType
    from typing import Any, Sequence

ENTRY_POINT_GROUP = "lm_eval.models"
MODEL_NAME = "aunet"
MODEL_TARGET = "aunet.evaluation.lm:AUNetLM"
_HOOKED_MODULE = "lm_eval.models"


def _entry_points() -> dict[str, str]:
    """``name -> "module:attr"`` of every installed ``lm_eval.models`` entry point (ours always included)."""
    from importlib import metadata  # here, not at start-up: this module is imported by every Python process

    found = {MODEL_NAME: MODEL_TARGET}
    try:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(ep.name, ep.value)
    except Exception:  # noqa: BLE001 - broken metadata of another package must not break lm-eval
        pass
    return found


def register_entry_points(registry: Any = None) -> list[str]:
    """Register the ``lm_eval.models`` entry points missing from lm-eval's model registry; returns their names.

    Placeholders are strings ``"module:attr"``: lm-eval imports the class on first use, and a later
    ``@register_model`` of the same class upgrades the placeholder instead of clashing with it.
    """
    if registry is None:
        from lm_eval.api.registry import model_registry as registry
    added = []
    for name, target in _entry_points().items():
        if name not in registry:
            registry.register(name, target=target)
            added.append(name)
    return added


def register() -> None:
    """Register ``aunet`` (and other entry-point models) with lm-eval, keeping lm-eval's own models available.

    lm-eval fills its registry from ``lm_eval.models`` only while the registry is empty, so that module is imported
    first; importing it also triggers the hook when installed, which makes this call idempotent.
    """
    import lm_eval.models  # noqa: F401

    register_entry_points()


class _RegisterAfterImport:
    """A meta path finder (duck-typed) that finds nothing itself: it wraps the loader of ``lm_eval.models`` so that
    the entry points are registered right after that module has run."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _HOOKED_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


class _Loader:
    """Delegates to the real loader of ``lm_eval.models``, then registers the entry points."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        try:
            register_entry_points()
        except Exception as exc:  # noqa: BLE001 - never break lm-eval because of a plugin
            print(f"warning: aunet could not register its lm-eval model: {exc}", file=sys.stderr)

    def __getattr__(self, name: str) -> Any:  # get_code, get_source, is_package, ... of the real loader
        return getattr(self.inner, name)


def install() -> None:
    """Add the import hook once (called by ``aunet-lm-eval.pth`` at interpreter start-up)."""
    if any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        return
    if _HOOKED_MODULE in sys.modules:  # lm-eval's models were imported before us: register right away
        try:
            register_entry_points()
        except Exception:  # noqa: BLE001
            pass
        return
    sys.meta_path.insert(0, _RegisterAfterImport())
