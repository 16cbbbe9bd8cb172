"""User-facing errors (one clear paragraph that names the file or setting and the fix), and
`flatten`, the one helper for nested configs and W&B summaries."""

from typing import Any


class AeLabError(Exception):
    """An error caused by the user's input (paths, configs, data), not by a bug.

    Entrypoints catch it and print its message without a traceback.
    """


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (with `prefix`: `{"prefix.a.b": 1}`), the way W&B spells
    nested config and summary entries. An empty dict stays a value (`{"a": {}}`)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat
