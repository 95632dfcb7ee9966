"""Finding (and when allowed, installing) the systems we compare against.

Rules:
  1. Look first, install second: a peer already importable or on PATH is used as it is.
  2. Installs go through the ordinary clients only: `pip install NAME` for PyPI packages and
     `apt-get install -y NAME` for Debian's (with one `apt-get update` per process before it).
  3. Every failure is an answer, not an exception: `(None, "why")`, and the bench records the
     reason in its JSON under `skipped`.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from types import ModuleType

INSTALL_TIMEOUT_S = 600
_apt_updated = False


def python_module(module: str, package: str, *, install: bool) -> tuple[ModuleType | None, str]:
    """Import `module`, installing PyPI `package` with pip when it is missing and allowed."""
    try:
        return importlib.import_module(module), ""
    except ImportError:
        pass
    if not install:
        return None, f"python module {module!r} is not installed (pip install {package}); installs disabled"
    code, output = _run([sys.executable, "-m", "pip", "install", "--quiet", package])
    if code != 0:
        return None, f"pip install {package} failed: {output.strip()[-300:]}"
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module), ""
    except ImportError as error:
        return None, f"pip installed {package} but {module!r} does not import: {error}"


def binary(name: str, debian_package: str, *, install: bool) -> tuple[str | None, str]:
    """The path of executable `name`, installing Debian `debian_package` when missing and allowed."""
    global _apt_updated
    found = shutil.which(name)
    if found:
        return found, ""
    if not install:
        return None, f"{name} not found (apt-get install {debian_package}); installs disabled"
    if shutil.which("apt-get") is None:
        return None, f"{name} not found and there is no apt-get to install {debian_package}"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return None, f"{name} not found; installing {debian_package} needs root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        code, output = _run(["apt-get", "update", "-qq"], env=env)
        if code != 0:
            return None, f"apt-get update failed: {output.strip()[-300:]}"
        _apt_updated = True
    code, output = _run(["apt-get", "install", "-y", "-qq", debian_package], env=env)
    if code != 0:
        return None, f"apt-get install {debian_package} failed: {output.strip()[-300:]}"
    found = shutil.which(name)
    if not found:
        return None, f"apt-get installed {debian_package} but {name} is not on PATH"
    return found, ""


def _run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=INSTALL_TIMEOUT_S, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)
    return done.returncode, done.stdout
