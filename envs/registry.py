"""Environment registration on top of Gymnasium's registry.

``register``/``make`` add thin conveniences to ``gymnasium.register``/``make``:
third-party packages are discovered through the ``thinkgym.envs`` entry-point
group, unknown ids get a did-you-mean error, and ``make`` returns the env itself
(no checker / order-enforcing wrappers) so its scoring methods stay reachable.
``gymnasium.make("thinkgym/Math-v0")`` works too.
"""

from __future__ import annotations

import difflib
import logging
from importlib.metadata import entry_points
from typing import Any, Callable

import gymnasium
from gymnasium.envs.registration import load_env_creator

from thinkgym.envs.core import EnvError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "thinkgym.envs"

_origins: dict[str, str] = {}  # env id -> who registered it ("thinkgym" or a plugin name)
_plugins_loaded = False


def register(id: str, entry_point: Callable[..., gymnasium.Env] | str, **kwargs: Any) -> None:
    """Register env ``id`` (``"namespace/Name-vN"``) made by ``entry_point(**kwargs)``;
    ``entry_point`` is a callable or a ``"module:attr"`` string. Registering an id
    again replaces it (Gymnasium warns)."""
    gymnasium.register(id=id, entry_point=entry_point, kwargs=kwargs, disable_env_checker=True, order_enforce=False)
    _origins.setdefault(id, "user")


def _registered_by(origin: str, register_all: Callable[[], Any]) -> None:
    """Run ``register_all`` and credit the ids it adds to ``origin``."""
    before = set(gymnasium.registry)
    register_all()
    for id in set(gymnasium.registry) - before:
        _origins[id] = origin


def load_plugins() -> None:
    """Import every ``thinkgym.envs`` entry point once; each registers its envs
    (an entry point that is a callable is called). A broken plugin is reported
    by name and skipped: it must not take the other environments down."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        def run(ep=ep):
            target = ep.load()
            if callable(target):
                target()
        try:
            _registered_by(ep.name, run)
        except Exception as exc:  # noqa: BLE001 - a third party's bug, reported by name
            log.error("thinkgym: environment plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)


def list_envs() -> dict[str, str]:
    """Registered thinkgym environment ids -> who registered them."""
    load_plugins()
    return dict(sorted(_origins.items()))


def spec(id: str) -> gymnasium.envs.registration.EnvSpec:
    load_plugins()
    if id not in gymnasium.registry:
        close = difflib.get_close_matches(id, list(gymnasium.registry), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; see `thinkgym envs list`"
        raise EnvError(f"unknown environment id {id!r}{hint}")
    return gymnasium.registry[id]


def make(id: str, *, think_format: float | None = None, tag_count: float | None = None, **kwargs: Any) -> gymnasium.Env:
    """Make env ``id`` with its registered kwargs updated by ``kwargs``.
    ``think_format=w`` (and/or ``tag_count=w``) wraps it in
    :class:`~thinkgym.envs.think.ThinkFormat`: the strict format reward (the
    partial-credit one) of weight ``w``."""
    env_spec = spec(id)
    creator = load_env_creator(env_spec.entry_point) if isinstance(env_spec.entry_point, str) else env_spec.entry_point
    env = creator(**{**env_spec.kwargs, **kwargs})
    env.spec = env_spec
    if think_format is not None or tag_count is not None:
        from thinkgym.envs.think import ThinkFormat
        env = ThinkFormat(env, weight=think_format, tag_count=tag_count)
    return env


def _register_builtin() -> None:
    register("thinkgym/Math-v0", "thinkgym.envs.math_env:make_math_env")
    register("thinkgym/Code-v0", "thinkgym.envs.code_env:make_code_env")
    register("thinkgym/JSON-v0", "thinkgym.envs.json_env:make_json_env")


_registered_by("thinkgym", _register_builtin)
