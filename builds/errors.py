"""Why a build did not succeed, in two families: the user's fault (their command, their
repository, their limits) and ours (no engine, a bug). The Build Buddy turns either
into an outcome and a plain reason; an error of ours also tells the user it is not
something they can fix."""

from builds.models import BuildOutcome


class BuildError(Exception):
    """Ends a build with `outcome`; the message is the reason the user reads."""

    outcome = BuildOutcome.FAIL

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UserError(BuildError):
    """Something the user can fix: a failing command, a missing branch, a limit hit."""


class TimedOut(UserError):
    outcome = BuildOutcome.TERMINATED

    def __init__(self) -> None:
        super().__init__("Build was timed out")


class InternalError(BuildError):
    """Our fault: the user's build may well be fine; running it again later may work."""

    outcome = BuildOutcome.TERMINATED

    def __init__(self, message: str) -> None:
        super().__init__(f"Buildsite could not run this build: {message}")


class Stopped(Exception):
    """The build was stopped from outside (cancelled, or reaped): its outcome is
    already written, and the buddy only cleans up."""
