"""The one exception type that tfdip raises for bad user input.

The command line turns a :class:`TfdipError` into a single line on stderr and exit status 2;
library users can catch it to tell their own mistakes from bugs.
"""


class TfdipError(ValueError):
    """Bad input or an impossible request; the message says what is wrong and what to do."""


class TfdipWarning(UserWarning):
    """Something the user should know that does not stop the work (the command line prints it
    as ``tfdip: warning: ...``)."""
