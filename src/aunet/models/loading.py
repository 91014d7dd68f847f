"""Model configs from YAML files or preset names."""

from __future__ import annotations

from pathlib import Path

from aunet.config import read_yaml
from aunet.errors import ConfigError
from aunet.models.config import ModelConfig, model_config_from_dict
from aunet.presets import closest_presets, preset_path


def resolve_config_path(spec: str | Path) -> Path:
    """``spec`` as a file path if it exists, else as a preset name; a ConfigError names the closest presets."""
    path = Path(spec)
    if path.is_file():
        return path
    found = preset_path(str(spec))
    if found is not None:
        return found
    if path.exists():
        raise ConfigError("", "not a regular file (a folder, pipe or device); give the path of a YAML file", str(spec))
    hints = closest_presets(str(spec))
    hint = f"; did you mean {', '.join(hints)}?" if hints else ""
    raise ConfigError("", f"no such file or preset{hint} (list presets with 'aunet presets')", str(spec))


def load_model_config(spec: str | Path) -> ModelConfig:
    """Read the ``model:`` section of a YAML file (or preset) into a validated config."""
    path = resolve_config_path(spec)
    data = read_yaml(path)
    if "model" not in data:
        raise ConfigError("model", "missing section; the file needs 'model:' with 'family: aunet', 'bpe' or 'hnet'",
                          str(path))
    try:
        return model_config_from_dict(data["model"])
    except ConfigError as exc:
        raise exc.with_source(str(path)) from None
