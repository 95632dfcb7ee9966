"""The Dkron system study's experiments on raftcron: see README.md (raftcron paper dkron-study)."""
