"""Errors that mean "the user asked for something we cannot do", with the fix in the message.

The CLI catches :class:`UserError` and prints ``error: <message>`` on one line with exit
code 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a path, a spec, a config field. The message names it and the fix."""
