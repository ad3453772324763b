"""GET a worker's JSON endpoint (/healthz, /readyz) the way a kubelet probe would."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def get_json(url: str, timeout: float = 3.0) -> tuple[int, dict[str, object]] | None:
    """(status, body) of a JSON endpoint, error statuses included; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return None
