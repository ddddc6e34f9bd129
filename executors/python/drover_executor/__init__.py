"""SDK for drover executors written in Python.

Subclass Executor, declare Field objects and call main(YourExecutor) from a
program named drover-executor-<type>.
"""

from .cli import main
from .codec import ProtocolError
from .executor import Executor, Run, RunLost
from .schema import NO_DEFAULT, ConfigError, Field

__all__ = ["main", "Executor", "Run", "RunLost", "Field", "NO_DEFAULT", "ConfigError",
           "ProtocolError"]
