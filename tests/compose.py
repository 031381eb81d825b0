"""Validate and resolve a compose file with docker-compose 1.29.2 from the tools venv that `make` creates.

docker-compose v1 checks a file offline, without a Docker engine or the network: the Compose Specification
schema it ships (unknown keys, a ``depends_on`` condition that does not exist), ``${VAR:-default}`` and
``${VAR:?error}`` interpolation, anchors and ``<<`` merges, and references between sections (a
``depends_on`` naming an undefined service, a named volume that is not declared). It lives in its own venv,
``.tools/`` (``make tools``, which ``make test`` runs first), because its pins do not fit the platform's lock.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKER_COMPOSE = REPO_ROOT / ".tools" / "bin" / "docker-compose"


class ComposeFileError(Exception):
    """docker-compose rejected a compose file; the message is its explanation."""


def docker_compose(
    compose_file: Path, *args: str, environment: Mapping[str, str] | None = None, env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f compose_file ARGS`` with exactly ``environment`` and ``env_file`` as the variables
    to interpolate.

    Neither the caller's environment nor a ``.env`` beside the file is read, so a developer's settings
    cannot change what a test sees.
    """
    if not DOCKER_COMPOSE.exists():
        raise FileNotFoundError(f"{DOCKER_COMPOSE} is missing: `make tools` installs it (`make test` runs that first)")
    with tempfile.TemporaryDirectory() as scratch:
        if env_file is None:
            env_file = Path(scratch) / "empty.env"
            env_file.touch()
        return subprocess.run(
            [str(DOCKER_COMPOSE), "--env-file", str(env_file), "-f", str(compose_file), *args],
            cwd=compose_file.parent,
            env=dict(environment or {}),
            capture_output=True,
            text=True,
            timeout=120,
        )


def resolve(compose_file: Path, environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The configuration as compose resolves it: validated, anchors merged, variables interpolated.

    Relative paths (a build context, a bind mount) come back absolute.

    Raises:
        ComposeFileError: the file is invalid or a required variable is missing; the message says which.
    """
    result = docker_compose(compose_file, "config", environment=environment)
    if result.returncode != 0:
        raise ComposeFileError(f"{compose_file} is invalid: {result.stderr.strip()}")
    config = yaml.safe_load(result.stdout)
    if not isinstance(config, dict) or not isinstance(config.get("services"), dict):
        raise ComposeFileError(f"{compose_file}: docker-compose config printed no services:\n{result.stdout}")
    return config
