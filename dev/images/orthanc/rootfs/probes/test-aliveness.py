#!/usr/bin/python3
"""The Orthanc stand-in's healthcheck: exits 0 when Orthanc answers GET /changes?last with HTTP 200
on 127.0.0.1 (HttpPort of /tmp/orthanc.json, as the first RegisteredUsers user if any), 1 otherwise
with the reason on stderr (never the password). ORTHANC_CONFIGURE_ROOT prefixes the path, for tests."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

CONFIG = Path(os.environ.get("ORTHANC_CONFIGURE_ROOT", "") + "/tmp/orthanc.json")
TIMEOUT = 5


def main() -> int:
    try:
        config = json.loads(CONFIG.read_text(encoding="utf-8"))
        port = int(config.get("HttpPort", 8042))
        user, password = next(iter((config.get("RegisteredUsers") or {}).items()), (None, None))
    except (OSError, ValueError, AttributeError) as err:
        print(f"test-aliveness: cannot read {CONFIG}: {type(err).__name__}", file=sys.stderr)
        return 1
    request = urllib.request.Request(f"http://127.0.0.1:{port}/changes?last")
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        print(f"test-aliveness: no answer on port {port}: {getattr(err, 'reason', err)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"test-aliveness: GET /changes?last on port {port} answered HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
