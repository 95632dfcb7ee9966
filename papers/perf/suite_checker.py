"""`raftcron bench checker`: how long `jepsen_like.linearizability.check` takes on register
histories of 1k and 10k operations from 10 and 50 clients, with and without crashed clients.

The histories are made by a real register, so every one of them is linearizable and the
checker has to find the witness (the expensive direction). Each client loops: invoke at a
random moment, take effect at a random point inside the operation, return later. Reads see the
register at their point; writes write a fresh value; a cas succeeds when the register holds
what it expects (a failed cas completes as `fail`). With crashes, 5% of the operations end as
`info` (the client is replaced by a new process, as Jepsen does), and a crashed write takes
effect or not with even odds: the checker cannot know which.

There is no peer in Python (Knossos is Clojure, Porcupine Go), so this bench reports ours
only, against the target: a 1k-operation history checked in <= 1 s.
"""

from __future__ import annotations

import random
import time
from typing import Any

from papers.perf.harness import BenchContext, BenchResult, Sample, Target, alternate, summarise

CRASH_PROBABILITY = 0.05
TIME_LIMIT_S = 120.0


def run(ctx: BenchContext) -> BenchResult:
    sizes = (100, 300) if ctx.quick else (1000, 10_000)
    clients = (10, 50)
    settings = {"operations": list(sizes), "clients": list(clients), "crash_probability": CRASH_PROBABILITY,
                "read_write_cas": [0.5, 0.35, 0.15], "model": "register", "time_limit_s": TIME_LIMIT_S}
    result = BenchResult("checker", settings, ours={})
    histories = {
        f"{size}ops_{count}clients_{'crashes' if crashes else 'clean'}": make_history(size, count, crashes, seed=size + count)
        for size in sizes for count in clients for crashes in (False, True)
    }

    def ours() -> Sample:
        return {name: _check(operations) for name, operations in histories.items()}

    samples = alternate(ctx.repeats, {"ours": ours}, ctx.say)
    result.repeats = ctx.repeats
    result.ours = summarise(samples["ours"])
    result.skipped["porcupine/knossos"] = "no linearizability checker for Python on PyPI to compare with"
    small = sizes[0]
    worst = max(result.ours[name]["check_s"] for name in result.ours if name.startswith(f"{small}ops_"))
    note = "quick: 100-operation histories" if ctx.quick else "slowest of the four 1k-operation histories"
    result.targets.append(Target(f"{small}-operation history, check seconds", worst, 1.0, "<=", note))
    return result


def _check(operations: list[Any]) -> Sample:
    from jepsen_like.linearizability import check
    from jepsen_like.models import RegisterModel

    started = time.perf_counter()
    verdict = check(operations, RegisterModel(), time_limit_s=TIME_LIMIT_S)
    elapsed = time.perf_counter() - started
    assert verdict.valid is not False, "a history made by a real register must be linearizable"
    return {"check_s": elapsed, "ops_s": len(operations) / elapsed if elapsed > 0 else 0.0,
            "decided": 1 if verdict.valid is True else 0, "info_ops": verdict.info_count}


def make_history(operations: int, clients: int, crashes: bool, *, seed: int) -> list[Any]:
    """A linearizable register history as paired operations (`pair_operations` of its events)."""
    from jepsen_like.history import Event, pair_operations

    rng = random.Random(seed)
    # Plan each client's operations back to back: a gap, then [call, return] with a point inside.
    plans: list[tuple[int, int, int, int, str]] = []  # (point, call, return, client slot, f)
    for slot in range(clients):
        t = rng.randrange(0, 1000)
        for _ in range(operations // clients + (1 if slot < operations % clients else 0)):
            call = t + rng.randrange(1, 2000)
            ret = call + rng.randrange(10, 5000)
            point = rng.randrange(call, ret + 1)
            f = rng.choices(("read", "write", "cas"), weights=(0.5, 0.35, 0.15))[0]
            plans.append((point, call, ret, slot, f))
            t = ret
    plans.sort()
    register: int | None = None
    next_value = 1
    process_of = list(range(clients))
    next_process = clients
    raw: list[tuple[int, int, Any, Any, str, Any]] = []  # (time, order, process, type, f, value)  # (time, order, process, type, f, value)
    order = 0
    # Values are decided in linearization order; events are sorted by time afterwards.
    invoke_value: Any
    done_value: Any
    for point, call, ret, slot, f in plans:
        crashed = crashes and rng.random() < CRASH_PROBABILITY
        process = process_of[slot]
        if f == "read":
            invoke_value, done_value, done_type = None, register, "ok"
        elif f == "write":
            invoke_value = done_value = next_value
            next_value += 1
            if not crashed or rng.random() < 0.5:
                register = invoke_value
            done_type = "ok"
        else:
            expected = register if rng.random() < 0.7 else rng.randrange(0, next_value + 1)
            new = next_value
            next_value += 1
            invoke_value = done_value = [expected, new]
            success = register == expected
            if success and (not crashed or rng.random() < 0.5):
                register = new
            done_type = "ok" if success else "fail"
        if crashed:
            done_type, done_value = "info", invoke_value if f != "read" else None
            process_of[slot] = next_process  # a crashed client comes back as a new process
            next_process += 1
        raw.append((call, order, process, "invoke", f, invoke_value))
        raw.append((ret, order + 1, process, done_type, f, done_value))
        order += 2
    raw.sort(key=lambda item: (item[0], item[1]))
    events = [Event(index, when, process, kind, f, None, _freeze(value))
              for index, (when, _order, process, kind, f, value) in enumerate(raw)]
    return pair_operations(events)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
