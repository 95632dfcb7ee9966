"""`handle_ready_async`: a leader's entries leave before its own save (thesis §10.2.1); anything
that reveals a new term or vote, and everything a follower sends, still waits for the save."""

from __future__ import annotations

import trio
from harness import Network

from raft.driver import handle_ready_async
from raft.messages import AppendEntries, Entry, HardState, Message, Snapshot

PAPER = dict(pre_vote=False, check_quorum=False)


def run_ready(net: Network, node_id: str) -> list[str]:
    """Handle one Ready of `node_id` asynchronously; the order in which it sent and saved."""
    order: list[str] = []
    storage = net.storages[node_id]

    async def save(hard: HardState | None, entries: list[Entry], snapshot: Snapshot | None) -> None:
        await trio.lowlevel.checkpoint()
        storage.save(hard, entries, snapshot)
        order.append("save")

    def send(message: Message) -> None:
        order.append(f"send {type(message).__name__} to {message.dst}")
        net.queue.append(message)

    async def main() -> None:
        await handle_ready_async(net.nodes[node_id], storage, save, send, lambda e: None,
                                 lambda s: None)

    trio.run(main)
    return order


def test_a_leader_sends_its_entries_before_its_own_save() -> None:
    net = Network(3, **PAPER)
    net.elect("n1")
    net.deliver_all()
    net.nodes["n1"].propose(b"x")
    assert run_ready(net, "n1") == ["send AppendEntries to n2", "send AppendEntries to n3", "save"]
    assert net.storages["n1"].last_index() == 2


def test_the_leader_commits_only_after_its_save_and_a_follower_ack() -> None:
    net = Network(3, **PAPER)
    n1 = net.elect("n1")
    net.deliver_all()
    n1.propose(b"x")
    run_ready(net, "n1")
    appends = [m for m in net.queue if isinstance(m, AppendEntries) and m.entries]
    assert n1.commit_index == 1  # nothing counted yet: no follower acked
    net.queue.clear()
    net.nodes["n2"].step(appends[0], net.now)
    assert run_ready(net, "n2")[0] == "save"  # a follower acks only what it saved
    n1.step(net.queue[-1], net.now)
    assert n1.commit_index == 2


def test_a_vote_waits_for_the_save_of_the_vote() -> None:
    net = Network(3, **PAPER)
    net.campaign("n1")  # n1's own Ready (term 1, vote for itself) went through the sync driver
    request = net.queue.pop(0)
    net.nodes[request.dst].step(request, net.now)
    assert run_ready(net, request.dst) == ["save", "send RequestVoteResponse to n1"]


def test_a_candidates_vote_requests_wait_for_its_term_and_vote() -> None:
    net = Network(3, **PAPER)
    net.now = net.nodes["n1"].next_deadline()
    net.nodes["n1"].tick(net.now)
    order = run_ready(net, "n1")  # candidate: term and vote must be durable before RequestVote
    assert order[0] == "save" and all(o.startswith("send RequestVote ") for o in order[1:])
