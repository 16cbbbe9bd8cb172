"""User-facing errors (one clear paragraph that names the file or setting and the fix), and
`flatten`, the one helper for nested configs and W&B summaries."""

from typing import Any

from hydra.errors import InstantiationException


class AeLabError(Exception):
    """An error caused by the user's input (paths, configs, data), not by a bug.

    Entrypoints catch it and print its message without a traceback.
    """


def user_error(err: BaseException) -> AeLabError | None:
    """The `AeLabError` behind `err`: itself, or the one a Hydra-instantiated constructor raised."""
    if isinstance(err, InstantiationException):
        err = err.__cause__
    return err if isinstance(err, AeLabError) else None


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
