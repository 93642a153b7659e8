"""Files shipped inside the package: traces, rate curves, embedded scenarios and topologies.

Everything is found with :mod:`importlib.resources`, so it works wherever the package is installed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from heteroscale.errors import ConfigError

# Bundled names a scenario may use instead of a path (see shared traces/README.md for the sources).
TRACES: dict[str, str] = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-code": "AzureLLMInferenceTrace_code.csv",
}
RATE_CURVES: dict[str, str] = {
    "servegen-m-large": "servegen_language_m-large_rate.csv",
    "servegen-m-small": "servegen_language_m-small_rate.csv",
    "servegen-mm-image": "servegen_multimodal_mm-image_rate.csv",
}
YAML_SUFFIXES = (".yaml", ".yml")


def data_path(*parts: str) -> Path:
    """Filesystem path of a file under ``heteroscale/data``."""
    resource = resources.files("heteroscale").joinpath("data", *parts)
    if not isinstance(resource, Path):
        # A zip-imported package has no stable path to hand to file readers.
        raise ConfigError(f"packaged data {'/'.join(parts)} is not on the filesystem ({resource})")
    return resource


def _yaml_files(folder: str) -> dict[str, Path]:
    directory = data_path(folder)
    if not directory.is_dir():
        return {}
    return {p.stem: p for p in sorted(directory.iterdir()) if p.suffix in YAML_SUFFIXES}


def embedded_scenarios() -> dict[str, Path]:
    """Embedded scenario name → its YAML file."""
    return _yaml_files("scenarios")


def embedded_topologies() -> dict[str, Path]:
    """Embedded topology name → its YAML file."""
    return _yaml_files("topologies")


def looks_like_path(ref: str) -> bool:
    """A reference with a directory separator or a YAML suffix is a path, anything else a name."""
    return "/" in ref or "\\" in ref or Path(ref).suffix.lower() in YAML_SUFFIXES
