"""raftcron: the command-line front end that ties raft/, scheduler/, sim/ and jepsen_like/ together."""
