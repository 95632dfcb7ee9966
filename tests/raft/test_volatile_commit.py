"""The commit index is volatile (Figure 2, "Volatile state on all servers"): a Ready whose only
news is a higher commit index syncs nothing, and the next save of entries carries it along.
One fsync fewer per write; a restarted node replays less and learns the rest from the leader.
"""

from __future__ import annotations

from harness import Network

from raft.messages import HardState

PAPER = dict(pre_vote=False, check_quorum=False)


def test_a_commit_that_alone_moved_is_not_saved() -> None:
    net = Network(3, **PAPER)
    net.elect("n1")
    net.deliver_all()
    n1 = net.nodes["n1"]
    saves = net.storages["n1"].saves
    n1.propose(b"x")
    net.process(["n1"])  # the entry: one save
    assert net.storages["n1"].saves == saves + 1
    net.deliver_all()  # acks arrive, n1 commits and applies 2: no save for that
    assert n1.commit_index == 2 and [e.data for e in net.applied["n1"]][-1] == b"x"
    assert net.storages["n1"].saves == saves + 1
    assert net.storages["n1"].initial_state() == HardState(term=1, vote="n1", commit=1)


def test_the_next_save_of_entries_carries_the_latest_commit() -> None:
    net = Network(3, **PAPER)
    net.elect("n1")
    net.deliver_all()
    n1 = net.nodes["n1"]
    n1.propose(b"x")
    net.deliver_all()
    n1.propose(b"y")
    net.process(["n1"])
    assert net.storages["n1"].initial_state().commit == 2
    assert net.storages["n1"].last_index() == 3


def test_a_term_or_vote_change_is_saved_before_the_reply_leaves() -> None:
    """Durability of term and vote is untouched: the vote reply leaves after the save."""
    net = Network(3, **PAPER)
    net.campaign("n1")
    net.deliver_one()  # n2 handles the vote request and replies
    assert net.storages["n2"].initial_state() == HardState(term=1, vote="n1", commit=0)


def test_a_restart_replays_up_to_the_stored_commit_and_learns_the_rest() -> None:
    net = Network(3, **PAPER)
    net.elect("n1")
    net.deliver_all()
    net.nodes["n1"].propose(b"x")
    net.deliver_all()
    net.tick(net.now + 100)  # a heartbeat tells the followers commit=2, alone
    net.deliver_all()
    assert net.nodes["n2"].commit_index == 2
    assert net.storages["n2"].initial_state().commit == 1  # never saved: volatile
    n2 = net.restart("n2")
    net.process(["n2"])
    assert n2.commit_index == 1 and [e.index for e in net.applied["n2"]] == [1]
    net.tick(net.now + 100)
    net.deliver_all()
    assert n2.commit_index == 2 and [e.index for e in net.applied["n2"]] == [1, 2]
