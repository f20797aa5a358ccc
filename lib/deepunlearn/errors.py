"""The one exception type a user should ever see: a sentence naming the problem and the fix."""


class UserError(ValueError):
    """Bad input: the message is one sentence saying what is wrong and how to fix it."""
