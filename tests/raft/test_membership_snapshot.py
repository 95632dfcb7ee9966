"""Membership changes one server at a time (thesis ch. 4) and log compaction with InstallSnapshot
(paper §7, Figure 13).
"""

from __future__ import annotations

import pytest
from harness import Network

from raft.errors import ProposalDropped
from raft.messages import (
    AppendEntries,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    RequestVote,
    Snapshot,
    SnapshotMeta,
)
from raft.node import ConfChange, encode_config
from raft.progress import Role
from raft.storage import MemoryStorage

THREE = frozenset({"n1", "n2", "n3"})


def settled(size: int = 3, seed: int = 40, **config: object) -> tuple[Network, str]:
    net = Network(size, seed=seed, **config)
    net.run(1000)
    [leader] = net.leaders()
    return net, leader


def commit_change(net: Network, leader: str, change: ConfChange) -> int:
    index, _ = net.nodes[leader].propose_config_change(change)
    net.run(100)
    assert net.nodes[leader].commit_index >= index
    return index


def other_nodes(net: Network, *excluded: str) -> list[str]:
    return sorted(set(net.nodes) - set(excluded))


# ---- learners and promotion ------------------------------------------------------------------------

def test_add_learner_catch_up_then_promote() -> None:
    """"a new server joins the cluster as a non-voting member. The leader replicates log entries
    to it, but it is not yet counted towards majorities for voting or commitment purposes. Once
    the new server has caught up with the rest of the cluster, the reconfiguration can proceed"
    Reference: thesis §4.2.1"""
    net, leader = settled()
    node = net.nodes[leader]
    for k in range(5):
        node.propose(f"before{k}".encode())
    net.run(100)
    net.add("n4", THREE | {"n4"})

    commit_change(net, leader, ConfChange("add_learner", "n4"))
    net.run(100)

    assert node.config == Configuration(voters=THREE, learners=frozenset({"n4"}))
    assert net.log("n4") == net.log(leader)
    assert net.nodes["n4"].config == node.config
    assert [e.data for e in net.applied["n4"]] == [e.data for e in net.applied[leader]]

    # not counted for commitment: leader + learner is no majority of three voters
    a, b = other_nodes(net, leader, "n4")
    net.cut(leader, a)
    net.cut(leader, b)
    index, _ = node.propose(b"learner alone")
    net.run(100)
    assert node.commit_index < index
    assert net.log("n4")[-1] == (index, node.term)  # ...though it got the entry
    net.heal()
    net.run(100)
    assert node.commit_index >= index

    # not counted for voting: it never campaigns, even without a leader
    mark = len(net.sent)
    net.isolate(leader)
    net.run(1000)
    assert not any(isinstance(m, RequestVote) and m.src == "n4" for m in net.sent[mark:])
    net.heal()
    net.run(1000)
    [leader] = net.leaders()
    node = net.nodes[leader]

    commit_change(net, leader, ConfChange("promote", "n4"))
    assert node.config == Configuration(voters=THREE | {"n4"})
    # now a majority is three of four: leader + one voter is not enough, leader + two is
    voters = other_nodes(net, leader)
    net.cut(leader, voters[0])
    net.cut(leader, voters[1])
    index, _ = node.propose(b"two of four")
    net.run(100)
    assert node.commit_index < index
    net.heal()
    net.cut(leader, voters[0])
    net.run(100)
    assert node.commit_index >= index


# ---- removal ---------------------------------------------------------------------------------------

def test_remove_a_follower() -> None:
    """"The new configuration takes effect on each server as soon as it is added to that
    server's log" — after removing a follower, the leader stops replicating to it and a majority
    is counted among the servers that remain.
    Reference: thesis §4.1"""
    net, leader = settled(seed=41)
    node = net.nodes[leader]
    stay, gone = other_nodes(net, leader)

    index, _ = node.propose_config_change(ConfChange("remove", gone))
    assert node.config.voters == THREE - {gone}  # in force at once, before it commits
    assert node.progress(gone) is None
    net.run(100)
    assert node.commit_index >= index
    assert net.nodes[stay].config.voters == THREE - {gone}

    mark = len(net.sent)
    net.isolate(gone)
    index, _ = node.propose(b"two voters")
    net.run(1500)
    assert node.commit_index >= index and net.leaders() == [leader]
    assert not any(m.dst == gone for m in net.sent[mark:] if m.src == leader)


def test_removed_server_does_not_disrupt() -> None:
    """"Once the cluster leader has created the Cnew entry, a server that is not in Cnew will no
    longer receive heartbeats, so it will time out and start new elections." Pre-vote and the
    lease keep those elections from deposing the leader: "if a server receives a RequestVote
    request within the minimum election timeout of hearing from a current leader, it does not
    update its term or grant its vote."
    Reference: thesis §4.2.3"""
    net, leader = settled(seed=46)
    node = net.nodes[leader]
    term = node.term
    gone = other_nodes(net, leader)[0]
    net.drop()
    node.propose_config_change(ConfChange("remove", gone))  # it never even hears of this
    mark = len(net.sent)

    net.run(2000)

    asks = [m for m in net.sent[mark:] if isinstance(m, RequestVote) and m.src == gone]
    assert asks, "it does time out and campaign"
    assert all(m.pre_vote for m in asks)
    assert not any(getattr(m, "granted", False) for m in net.sent[mark:])
    assert net.leaders() == [leader] and node.term == term
    assert node.commit_index == node.last_index


def test_leader_removes_itself_and_steps_down_after_commit() -> None:
    """"a leader that is removed from the configuration steps down once the Cnew entry is
    committed. ... there will be a period of time (while it is committing Cnew) when a leader
    can manage a cluster that does not include itself; it replicates log entries but does not
    count itself in majorities."
    Reference: thesis §4.2.2"""
    net, leader = settled(seed=42)
    node = net.nodes[leader]
    a, b = other_nodes(net, leader)
    net.cut(leader, b)  # so only a receives Cnew at first

    index, _ = node.propose_config_change(ConfChange("remove", leader))
    net.run(100)
    # leader + a would be a majority of the old three, but the leader no longer counts itself
    assert node.role is Role.LEADER and node.commit_index < index
    assert net.log(a)[-1][0] == index

    net.heal()
    net.run(100)
    assert node.role is Role.FOLLOWER
    assert [e.fields["reason"] for e in net.events[leader] if e.kind == "role"][-1] == "removed from configuration"
    assert node.commit_index >= index
    mark = len(net.sent)
    net.run(1500)
    [new] = net.leaders()
    assert new in (a, b)
    assert not any(isinstance(m, RequestVote) and m.src == leader for m in net.sent[mark:])
    index, _ = net.nodes[new].propose(b"without n-old")
    net.run(100)
    assert net.nodes[new].commit_index >= index


# ---- a configuration entry that is truncated --------------------------------------------------------

def test_truncated_config_entry_reverts_the_configuration() -> None:
    """"a log entry for a configuration change can be removed (if leadership changes); in this
    case, a server must be prepared to fall back to the previous configuration in its log."
    Reference: thesis §4.1"""
    storage = MemoryStorage()
    storage.save(HardState(term=1), [Entry(index=1, term=1, kind=EntryKind.NOOP)], None)
    net = Network(3, storages={"n2": storage}, pre_vote=False, check_quorum=False)
    n2 = net.nodes["n2"]
    with_learner = Configuration(voters=THREE, learners=frozenset({"n4"}))

    n2.step(AppendEntries(src="n1", dst="n2", term=1, prev_log_index=1, prev_log_term=1, commit=1,
                          entries=(Entry(index=2, term=1, kind=EntryKind.CONFIG, data=encode_config(with_learner)),)),
            net.now)
    net.process(["n2"])
    assert n2.config == with_learner

    n2.step(AppendEntries(src="n3", dst="n2", term=2, prev_log_index=1, prev_log_term=1, commit=1,
                          entries=(Entry(index=2, term=2, kind=EntryKind.NOOP),)), net.now)
    net.process(["n2"])

    assert net.log("n2") == [(1, 1), (2, 2)]
    assert n2.config == Configuration(voters=THREE)


# ---- one change at a time --------------------------------------------------------------------------

def test_config_change_refused_while_another_is_uncommitted() -> None:
    """"Commitment of Cnew allows ... Further configuration changes can be started. Before this
    point, overlapping configuration changes could lead to unsafe situations"
    Reference: thesis §4.1"""
    net, leader = settled(seed=43)
    node = net.nodes[leader]
    net.isolate(leader)  # keep the first change uncommitted
    node.propose_config_change(ConfChange("add_learner", "n4"))
    with pytest.raises(ProposalDropped, match="not yet committed"):
        node.propose_config_change(ConfChange("add_learner", "n5"))
    net.heal()
    net.run(100)
    node.propose_config_change(ConfChange("add_learner", "n5"))  # fine once the first committed


def test_config_change_refused_before_leader_commits_in_its_term() -> None:
    """"a leader may not append a new configuration entry until it has committed an entry from
    its current term" (the 2015 fix to single-server changes, raft-dev).
    Reference: thesis §4.1"""
    net = Network(3)
    n1 = net.nodes["n1"]
    net.campaign("n1")
    net.deliver_all(lambda m: not isinstance(m, AppendEntries))
    assert n1.role is Role.LEADER and n1.commit_index < n1.last_index
    with pytest.raises(ProposalDropped, match="committed an entry of its term"):
        n1.propose_config_change(ConfChange("add_learner", "n4"))
    net.deliver_all()
    n1.propose_config_change(ConfChange("add_learner", "n4"))


# ---- compaction and InstallSnapshot ---------------------------------------------------------------

def test_lagging_follower_receives_snapshot_in_chunks() -> None:
    """"the leader must occasionally send snapshots to followers that lag behind. This happens
    when the leader has already discarded the next log entry that it needs to send to a
    follower." Figure 13: "Send chunks of a snapshot to a follower. Leaders always send chunks
    in order." ... "Reset state machine using snapshot contents".
    Reference: §7, Figure 13"""
    net, leader = settled(seed=44, snapshot_chunk_bytes=10)
    node = net.nodes[leader]
    lagging = other_nodes(net, leader)[1]
    net.isolate(lagging)
    for k in range(10):
        node.propose(f"v{k}".encode())
    net.run(100)
    compact_at = node.applied_index
    assert compact_at == node.commit_index == node.last_index

    snapshot = node.compact(compact_at, b"S" * 35)
    net.storages[leader].compact(snapshot)
    assert snapshot.meta == SnapshotMeta(index=compact_at, term=node.term, config=Configuration(voters=THREE))
    assert node.snapshot_index == compact_at and net.log(leader) == []
    index, _ = node.propose(b"after the snapshot")
    net.run(50)

    mark = len(net.sent)
    net.heal()
    net.run(300)

    chunks = [m for m in net.sent[mark:] if isinstance(m, InstallSnapshot)]
    assert [(m.offset, len(m.data), m.done) for m in chunks] == [(0, 10, False), (10, 10, False),
                                                                  (20, 10, False), (30, 5, True)]
    assert net.restored[lagging] == [snapshot]  # its Ready carried the snapshot
    assert net.storages[lagging].snapshot() == snapshot
    follower = net.nodes[lagging]
    assert follower.snapshot_index == compact_at
    assert net.log(lagging) == net.log(leader) == [(index, node.term)]
    assert follower.commit_index == node.commit_index
    assert net.applied[lagging][-1].data == b"after the snapshot"

    restarted = net.restart(lagging)  # the snapshot and what follows it survive a restart
    assert restarted.snapshot_index == compact_at and restarted.last_index == index


def test_snapshot_of_a_prefix_keeps_the_following_entries() -> None:
    """"If existing log entry has same index and term as snapshot's last included entry, retain
    log entries following it and reply"
    Reference: §7, Figure 13"""
    storage = MemoryStorage()
    storage.save(HardState(term=1, commit=1), [Entry(index=i, term=1) for i in range(1, 5)], None)
    net = Network(3, storages={"n2": storage})
    n2 = net.nodes["n2"]
    meta = SnapshotMeta(index=2, term=1, config=Configuration(voters=THREE))

    n2.step(InstallSnapshot(src="n1", dst="n2", term=1, meta=meta, offset=0, data=b"state", done=True), net.now)
    net.process(["n2"])

    assert n2.snapshot_index == 2 and n2.commit_index == 2
    assert net.log("n2") == [(3, 1), (4, 1)]
    assert net.restored["n2"] == [Snapshot(meta=meta, data=b"state")]
    assert net.storages["n2"].last_index() == 4


def test_up_to_date_followers_never_need_a_snapshot() -> None:
    """"Each server takes snapshots independently, covering just the committed entries in its
    log." Followers that keep up get ordinary AppendEntries, however often everyone compacts
    (6.5840 TestSnapshotBasic).
    Reference: §7"""
    net, leader = settled(seed=45)
    node = net.nodes[leader]
    for k in range(50):
        node.propose(f"s{k}".encode())
        net.run(20)
        for node_id, member in net.nodes.items():
            if member.applied_index - member.snapshot_index >= 10:
                snap = member.compact(member.applied_index, f"upto{member.applied_index}".encode())
                net.storages[node_id].compact(snap)
    net.run(100)
    assert not any(isinstance(m, InstallSnapshot) for m in net.sent)
    for node_id, member in net.nodes.items():
        assert member.last_index - member.snapshot_index < 12
        assert member.commit_index == node.commit_index


def test_leader_whose_removal_is_uncommitted_can_lead_again() -> None:
    """"a leader that is removed from the configuration steps down once the Cnew entry is
    committed. If the leader stepped down before this point, it might still time out and become
    leader again" — it must be able to, or a two-server cluster whose leader removed itself,
    then crashed before Cnew reached the other server, is stuck for good: the other server's
    log is behind, so it cannot win, and the removed one would never ask.
    Reference: thesis §4.2.2"""
    net = Network(2, seed=47)
    net.run(1000)
    [leader] = net.leaders()
    [other] = other_nodes(net, leader)
    net.isolate(leader)
    index, _ = net.nodes[leader].propose_config_change(ConfChange("remove", leader))
    net.run(10)
    net.restart(leader)  # it crashes with Cnew = {other} in its log, uncommitted
    net.heal()

    net.run(3000)

    assert net.leaders() == [other]
    assert net.nodes[other].config == Configuration(voters=frozenset({other}))
    assert net.nodes[other].commit_index > index
    assert net.log(leader) == net.log(other)[: len(net.log(leader))]


def test_vote_does_not_depend_on_the_voters_configuration() -> None:
    """"servers process incoming RPC requests without consulting their current
    configurations" — in particular a server grants its vote to an up-to-date candidate that its
    own latest configuration leaves out. Here two leaders each began removing a different server
    (n1 in term 2: Cnew = {n1, n2}; n3 in term 3: Cnew = {n1, n3}) and n2 is down. Only n3 can
    lead, with n1's vote, although n1's own uncommitted Cnew leaves n3 out.
    Reference: thesis §4.1"""
    def entry(index: int, term: int, kind: EntryKind = EntryKind.NOOP, voters: tuple[str, ...] = ()) -> Entry:
        data = encode_config(Configuration(voters=frozenset(voters))) if voters else b""
        return Entry(index=index, term=term, kind=kind, data=data)

    def storage(entries: list[Entry], term: int, commit: int, vote: str | None = None) -> MemoryStorage:
        stored = MemoryStorage()
        stored.save(HardState(term=term, vote=vote, commit=commit), entries, None)
        return stored

    base = [entry(1, 1), entry(2, 2)]
    net = Network(3, seed=48, storages={
        "n1": storage(base + [entry(3, 2, EntryKind.CONFIG, ("n1", "n2"))], term=2, commit=2),
        "n2": storage(base + [entry(3, 3)], term=3, commit=3, vote="n3"),
        "n3": storage(base + [entry(3, 3), entry(4, 3, EntryKind.CONFIG, ("n1", "n3"))], term=3, commit=3),
    })
    assert net.nodes["n1"].config.voters == {"n1", "n2"}
    assert net.nodes["n3"].config.voters == {"n1", "n3"}
    net.isolate("n2")

    net.run(3000)

    assert net.leaders() == ["n3"]
    assert net.log("n1") == net.log("n3")
    assert net.nodes["n1"].config.voters == {"n1", "n3"}
    assert net.nodes["n3"].commit_index == net.nodes["n3"].last_index
