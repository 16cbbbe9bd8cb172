"""User-facing errors: one clear paragraph that names the file or setting and the fix."""


class AeLabError(Exception):
    """An error caused by the user's input (paths, configs, data), not by a bug.

    Entrypoints catch it and print its message without a traceback.
    """
