"""User-facing errors: one clear paragraph that names the file or setting and the fix."""


class AeLabError(Exception):
    """An error caused by the user's input (paths, configs, data), not by a bug.

    Entrypoints catch it and print its message without a traceback.
    """


def user_error(err: BaseException) -> AeLabError | None:
    """The `AeLabError` behind `err`: itself, or the one a Hydra-instantiated constructor raised."""
    from hydra.errors import InstantiationException

    if isinstance(err, InstantiationException):
        err = err.__cause__
    return err if isinstance(err, AeLabError) else None
