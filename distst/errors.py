"""One error type for bad user input, printed by the CLI as one line with a non-zero exit."""


class DiststError(Exception):
    """A user-facing error: the message names the file, key or value and the fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says whether and how the run can be continued."""
