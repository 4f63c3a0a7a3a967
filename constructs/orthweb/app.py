"""Entry point: load settings, build the stack, synthesize. User errors exit 2 with one message."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orthweb.settings import CONTEXT_KEY, Settings, SettingsError


def read_context(path: Path) -> Mapping[str, Any]:
    """The ``context.orthweb`` object of cdktf.json (empty when absent)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path.name} is not valid JSON ({exc}); fix the file") from None
    context = data.get("context", {}).get(CONTEXT_KEY, {})
    if not isinstance(context, dict):
        raise SettingsError(f"{path.name}: context.{CONTEXT_KEY} must be a JSON object of settings")
    return context


def main(project_dir: Path, environ: Mapping[str, str] | None = None) -> int:
    """Synthesize the stack for the project in ``project_dir`` (where cdktf.json lives)."""
    env = os.environ if environ is None else environ
    try:
        settings = Settings.load(read_context(project_dir / "cdktf.json"), env)
    except SettingsError as exc:
        print(f"orthweb: {exc}", file=sys.stderr)
        return 2
    # jsii's banner about Node 20's end of life would bury the synth output; Node 20 works.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    # Imported only after the settings are good: the AWS bindings take seconds to load.
    from cdktf import App

    from orthweb.stack import STACK_NAME, OrthwebStack

    app = App()
    OrthwebStack(app, STACK_NAME, settings=settings, project_dir=project_dir)
    app.synth()
    return 0
