"""The error a user gets: one line, without a traceback (the CLI prints it and exits 2)."""


class BreakoutSB3Error(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def first_line(error: BaseException | str) -> str:
    """:return: the first line of an exception's message (its type's name if it has none), or of a text"""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return "" if isinstance(error, str) else type(error).__name__


def os_error_line(error: OSError, folder: str) -> str:
    """:return: an OS error met while writing into ``folder``, naming the file when the error knows it"""
    reason = error.strerror or first_line(error)
    if error.filename is not None:
        return f"cannot write {error.filename}: {reason}"
    return f"a write into {folder} failed: {reason}"
