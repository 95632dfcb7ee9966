"""scheduler.server: the real server process (Raft runtime + state machine + HTTP API).

Rules:
  1. Nothing here decides what the replicated state means: that is the state machine's job
     (scheduler/ and `kv.py`). This package wires, bounds and reports.
  2. Options are validated, and security refusals made, before anything binds a port.
"""

from scheduler.server.node import Server as Server
from scheduler.server.options import OptionsError as OptionsError, ServerOptions as ServerOptions

__all__ = ["OptionsError", "Server", "ServerOptions"]
