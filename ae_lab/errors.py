"""The two kinds of error a user can cause: `AeLabError` (a path, a file, a run: printed as one
paragraph) and `SettingError` (an argument of a library class out of range: the command line
turns its argument names into config keys, `ae_lab.cli.describe`)."""

import sys
from math import inf


def error_line(message: str) -> None:
    """The one way a user's error reaches stderr: one paragraph, no traceback."""
    print(f"\n[ae-lab] error: {message}\n", file=sys.stderr)


class AeLabError(Exception):
    """An error caused by the user's input (paths, configs, data), not by a bug.

    Entrypoints catch it and print its message without a traceback.
    """


class SettingError(ValueError):
    """`owner(name=value, ...)` was given a value it cannot work with.

    The message speaks of the constructor's own argument `names` (`depth`, `window_size`), never
    of a config file: the library does not know which config key set the value.
    """

    def __init__(self, owner: type, names: str | tuple[str, ...], message: str) -> None:
        super().__init__(f"{owner.__name__}: {message}")
        self.owner = owner
        self.names = (names,) if isinstance(names, str) else tuple(names)


def check_number(
    owner: type,
    name: str,
    value: object,
    low: float = -inf,
    high: float = inf,
    integer: bool = False,
    low_open: bool = False,
) -> None:
    """Raise SettingError unless `value` is a finite number (an int if `integer`) in the range
    [low, high] ((low, high] with `low_open`); a bool or a string is never a number here."""
    # NaN fails the range test below
    ok = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) != inf
    ok = ok and (not integer or float(value).is_integer())
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        kind = "an integer" if integer else "a finite number"
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        where = f"{bound} and <= {high:g}" if high != inf else bound
        raise SettingError(owner, name, f"{name}={value!r} must be {kind} {where}")
