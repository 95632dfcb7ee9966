"""Swimlane timeline of one trace: what each node was, when, and how long there was no leader.

Input is the JSON-lines trace of `sim/trace.py` (`t` true ms, `node`, `local`, `kind`, fields),
which simulated and real nodes share; `t` is used where present, else the node's `local` clock.
Output is one figure (PNG or SVG): a lane per node with its role as a band (follower thin,
pre-candidate hatched, candidate medium, leader full height), coloured by term; crashed periods
grey and crossed, pauses dotted, partitions shaded orange; campaigns, votes and new leaders
marked; every period without a leader shaded red with its duration written above it; and, when
the trace has scheduler events (`fire`, `skip`, `miss`, `exec_start`, `exec_finish`,
`duplicate`), a lane for them with misses and duplicates in a warning colour.

A period without a leader follows `sim.runner.FailoverMeter`: it starts when the acknowledged
leader is lost (it crashes, pauses, steps down, or a partition leaves it without a majority) and
ends when a leader of a later term is established. The meter sees messages and ends the outage
when the new leader's first heartbeat has reached a quorum; a trace has no messages, so here it
ends when the new leader commits its first entry of its term (a quorum acknowledged it), about
one network latency later. `raftcron sim --plot` passes the meter's own windows instead.

Long spans stay legible: bands keep a minimum width of about a pixel, and marks of one kind on
one lane turn into a small histogram when there are too many to draw one by one.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

SCHEDULER_KINDS = ("fire", "exec_start", "exec_finish", "skip", "miss", "duplicate")
WARNING_KINDS = frozenset({"miss", "duplicate"})
NET_NODE = "net"
NODE_KINDS = frozenset({
    "role", "campaign", "vote", "commit", "start", "crash", "pause", "resume", "clock_jump",
    "timeout_now", "transfer", "transfer_aborted", "snapshot_taken", "snapshot_installed",
    "snapshot_send", "config", "reads_dropped",
})
ROLES = ("follower", "pre-candidate", "candidate", "leader")
TERM_COLOURS = ("#4C72B0", "#55A868", "#8172B2", "#CCB974", "#64B5CD", "#DD8452", "#937860", "#DA8BC3")
TERM_ZERO_COLOUR = "#b8c0cc"
MONO_COLOUR = "#6c7a89"
TERMS_COLOURED_MAX = 24
NO_LEADER_COLOUR = "#d62728"
WARNING_COLOUR = "#e8590c"
MARKS_PER_LANE_MAX = 150  # beyond this, one kind of mark on one lane is drawn as a histogram
ANNOTATED_WINDOWS_MAX = 10
AXIS_WIDTH_PX = 1150  # the plot area's width at our size and dpi, for minimum band widths


class TraceError(ValueError):
    """The trace cannot be read or holds nothing to draw; the message says where and why."""


# ---- the model -------------------------------------------------------------------------------------
@dataclass(slots=True)
class Segment:
    start_ms: float
    end_ms: float
    role: str
    term: int


@dataclass(slots=True)
class Span:
    start_ms: float
    end_ms: float
    label: str = ""


@dataclass(slots=True)
class Mark:
    t_ms: float
    node: str
    kind: str
    fields: dict[str, Any]


@dataclass(slots=True)
class Window:
    """A period without a leader. `closed` is False when the trace ended first."""

    start_ms: float
    end_ms: float
    closed: bool
    cause: str
    new_leader: str | None = None
    term: int | None = None

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(slots=True)
class Timeline:
    nodes: list[str]
    start_ms: float
    end_ms: float
    time_field: str  # "t" (true time) or "local" (a node's clock, when the trace has no `t`)
    segments: dict[str, list[Segment]] = field(default_factory=dict)
    down: dict[str, list[Span]] = field(default_factory=dict)
    paused: dict[str, list[Span]] = field(default_factory=dict)
    cut: dict[str, list[Span]] = field(default_factory=dict)
    node_marks: list[Mark] = field(default_factory=list)  # campaign, vote, clock_jump, transfer...
    elections: list[Mark] = field(default_factory=list)  # role -> leader
    net_marks: list[Mark] = field(default_factory=list)
    scheduler: list[Mark] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    windows_measured: str = "inferred"  # or "meter": FailoverMeter's own windows


# ---- reading ---------------------------------------------------------------------------------------
def load_trace(path: str) -> list[dict[str, Any]]:
    """Records of a JSON-lines trace, checked line by line; raises TraceError."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror or error}") from None
    records = []
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    records.append(_parse_line(line, f"{path}:{number}"))
        except UnicodeDecodeError:
            raise TraceError(f"{path} is not a text file (expected JSON lines)") from None
    if not records:
        raise TraceError(f"{path} holds no trace events")
    return records


def _parse_line(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise TraceError(f"{where}: not a JSON trace line ({error.msg})") from None
    check_record(record, where)
    checked: dict[str, Any] = record
    return checked


def check_record(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise TraceError(f"{where}: a trace line must be a JSON object")
    if not isinstance(record.get("kind"), str) or not isinstance(record.get("node"), str):
        raise TraceError(f"{where}: a trace event needs a string `kind` and `node`")
    if not _is_time(record.get("t")) and not _is_time(record.get("local")):
        raise TraceError(f"{where}: a trace event needs a time, `t` or `local` (ms)")


def _is_time(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _node_order(node: str) -> tuple[str, int, str]:
    """n2 before n10: split a trailing number off the name."""
    digits = len(node) - len(node.rstrip("0123456789"))
    if digits and digits < len(node):
        return (node[:-digits], int(node[-digits:]), node)
    return (node, -1, node)


# ---- building the model ---------------------------------------------------------------------------
def build_timeline(records: Sequence[dict[str, Any]], *,
                   failovers: Sequence[tuple[float, float | None]] | None = None) -> Timeline:
    """The model of a trace. `failovers`: exact (start, end) ms of periods without a leader, as
    FailoverMeter saw them (end None: still open); without it, they are inferred."""
    for number, record in enumerate(records, start=1):
        check_record(record, f"event {number}")
    time_field = "t" if all(_is_time(r.get("t")) for r in records) else "local"
    ordered = sorted(records, key=lambda r: r[time_field] if _is_time(r.get(time_field)) else r["local"])
    nodes = sorted({r["node"] for r in ordered if r["kind"] in NODE_KINDS and r["node"] != NET_NODE},
                   key=_node_order)
    if not nodes and not any(r["kind"] in SCHEDULER_KINDS for r in ordered):
        raise TraceError("the trace has no node or scheduler events to draw")
    times = [_time(r, time_field) for r in ordered]
    builder = _Builder(Timeline(nodes, min(times), max(times), time_field))
    for record, t in zip(ordered, times):
        builder.feed(record, t)
    timeline = builder.finish()
    inferred = infer_windows(ordered, times, nodes)
    if failovers is not None:
        timeline.windows = [_meter_window(s, e, inferred, timeline.end_ms) for s, e in failovers]
        timeline.windows_measured = "meter"
    else:
        timeline.windows = inferred
    return timeline


def _meter_window(start_ms: float, end_ms: float | None, inferred: Sequence[Window], trace_end_ms: float) -> Window:
    """A window FailoverMeter measured, with its cause from the trace (the meter and the trace
    see the same crash, pause or partition). The meter leaves an outage open when the lost
    leader comes back still leading (it waits for a later term); the trace closes that one."""
    twin = next((w for w in inferred if abs(w.start_ms - start_ms) < 0.5), None)
    cause = twin.cause if twin is not None else "leader lost"
    if end_ms is None and twin is not None and twin.closed:
        return twin
    return Window(start_ms, trace_end_ms if end_ms is None else end_ms, end_ms is not None, cause)


def _time(record: dict[str, Any], time_field: str) -> float:
    value = record.get(time_field)
    if _is_time(value):
        return float(value)
    return float(record["local"])


class _Builder:
    """Folds events into bands and marks, one node state machine per lane."""

    def __init__(self, timeline: Timeline) -> None:
        self.tl = timeline
        self.role: dict[str, tuple[str, int, float] | None] = {n: None for n in timeline.nodes}
        self.term: dict[str, int] = {n: 0 for n in timeline.nodes}
        self.down_since: dict[str, float | None] = {n: None for n in timeline.nodes}
        self.paused_since: dict[str, float | None] = {n: None for n in timeline.nodes}
        self.cut_since: dict[str, tuple[float, str]] = {}
        for name in ("segments", "down", "paused", "cut"):
            setattr(timeline, name, {n: [] for n in timeline.nodes})

    def feed(self, record: dict[str, Any], t: float) -> None:
        kind, node = record["kind"], record["node"]
        if kind in SCHEDULER_KINDS:
            self.tl.scheduler.append(Mark(t, node, kind, record))
        elif node == NET_NODE:
            self._net(record, t)
        elif node in self.role:
            self._node(node, kind, record, t)

    def _node(self, node: str, kind: str, record: dict[str, Any], t: float) -> None:
        if kind == "role" and record.get("role") in ROLES:
            self._set_role(node, t, record["role"], _int(record.get("term"), self.term[node]))
            if record["role"] == "leader":
                self.tl.elections.append(Mark(t, node, kind, record))
        elif kind == "crash":
            self._close_role(node, t)
            self._close_pause(node, t)
            self.down_since[node] = t
        elif kind == "start":
            since = self.down_since[node]
            if since is not None:
                self.tl.down[node].append(Span(since, t, "down"))
            self.down_since[node] = None
        elif kind == "pause":
            self.paused_since[node] = t
        elif kind == "resume":
            self._close_pause(node, t)
        elif kind == "commit" or (kind == "vote" and not record.get("pre_vote")):
            self._bump_term(node, t, _int(record.get("term"), 0))
        if kind in ("campaign", "vote", "clock_jump", "timeout_now", "transfer"):
            self.tl.node_marks.append(Mark(t, node, kind, record))

    def _set_role(self, node: str, t: float, role: str, term: int) -> None:
        self._close_role(node, t)
        self.role[node] = (role, term, t)
        self.term[node] = max(self.term[node], term)

    def _close_role(self, node: str, t: float) -> None:
        current = self.role[node]
        if current is not None:
            role, term, since = current
            if t > since:
                self.tl.segments[node].append(Segment(since, t, role, term))
            self.role[node] = None

    def _bump_term(self, node: str, t: float, term: int) -> None:
        """A follower that adopts a higher term emits no role event; votes and commits show it."""
        current = self.role[node]
        if current is not None and term > current[1]:
            self._set_role(node, t, current[0], term)

    def _close_pause(self, node: str, t: float) -> None:
        since = self.paused_since[node]
        if since is not None:
            self.tl.paused[node].append(Span(since, t, "paused"))
            self.paused_since[node] = None

    def _net(self, record: dict[str, Any], t: float) -> None:
        kind = record["kind"]
        if kind in ("partition", "one_way"):
            for node in _cut_off(record.get("sides"), kind, self.tl.nodes):
                self.cut_since.setdefault(node, (t, "one-way" if kind == "one_way" else "partitioned"))
        elif kind == "heal":
            for node, (since, label) in sorted(self.cut_since.items()):
                self.tl.cut[node].append(Span(since, t, label))
            self.cut_since.clear()
        self.tl.net_marks.append(Mark(t, NET_NODE, kind, record))

    def finish(self) -> Timeline:
        end = self.tl.end_ms
        for node in self.tl.nodes:
            self._close_role(node, end)
            self._close_pause(node, end)
            if self.down_since[node] is not None:
                self.tl.down[node].append(Span(self.down_since[node] or 0.0, end, "down"))
        for node, (since, label) in self.cut_since.items():
            self.tl.cut[node].append(Span(since, end, label))
        return self.tl


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _cut_off(sides: Any, kind: str, nodes: Sequence[str]) -> list[str]:
    """The nodes to shade: the smaller side of a partition, or the sending side of a one-way cut."""
    if not (isinstance(sides, list) and len(sides) == 2 and all(isinstance(s, list) for s in sides)):
        return []
    side_a, side_b = ([n for n in side if n in nodes] for side in sides)
    if kind == "one_way":
        return side_a
    return side_a if len(side_a) <= len(side_b) else side_b


# ---- periods without a leader ---------------------------------------------------------------------
class _LeaderWatch:
    """FailoverMeter's state machine, driven by trace events instead of messages. One addition:
    a leader that was only paused or cut off, and comes back still leading before anyone else
    won an election, ends the outage when it is back (the meter waits for a later term)."""

    def __init__(self, nodes: Sequence[str], start_ms: float) -> None:
        self.nodes = list(nodes)
        self.quorum = len(nodes) // 2 + 1
        self.current: tuple[int, str] | None = None
        self.still_leading = False  # the current leader has not crashed or stepped down
        self.paused = False
        self.outage: tuple[float, str] | None = (start_ms, "first election")
        self.elected: set[tuple[int, str]] = set()
        self.blocked: set[tuple[str, str]] = set()
        self.windows: list[Window] = []

    def lost(self, t: float, cause: str) -> None:
        if self.outage is None:
            self.outage = (t, cause)

    def leader_cut(self) -> bool:
        if self.current is None:
            return False
        leader = self.current[1]
        reachable = sum(1 for n in self.nodes if n == leader or (
            (leader, n) not in self.blocked and (n, leader) not in self.blocked))
        return reachable < self.quorum

    def maybe_recovered(self, t: float) -> None:
        if self.outage is None or self.current is None or not self.still_leading:
            return
        if self.paused or self.leader_cut():
            return
        start, cause = self.outage
        self.windows.append(Window(start, t, True, cause + ", then back", self.current[1], self.current[0]))
        self.outage = None

    def established(self, t: float, term: int, node: str) -> None:
        if self.current is not None and term <= self.current[0]:
            return
        if self.outage is not None:
            start, cause = self.outage
            self.windows.append(Window(start, t, True, cause, node, term))
        self.current, self.outage = (term, node), None
        self.still_leading, self.paused = True, False


def infer_windows(records: Sequence[dict[str, Any]], times: Sequence[float], nodes: Sequence[str]) -> list[Window]:
    if not nodes:
        return []
    watch = _LeaderWatch(nodes, times[0])
    for record, t in zip(records, times):
        kind, node = record["kind"], record["node"]
        leader = watch.current[1] if watch.current is not None else None
        if node == NET_NODE:
            _watch_network(watch, record, t)
        elif kind == "role" and record.get("role") == "leader":
            watch.elected.add((_int(record.get("term"), 0), node))
        elif kind == "commit" and (_int(record.get("term"), 0), node) in watch.elected:
            watch.established(t, _int(record.get("term"), 0), node)
        elif node != leader:
            continue
        elif kind in ("role", "crash"):
            watch.still_leading = False
            watch.lost(t, f"{node} {'stepped down' if kind == 'role' else 'crashed'}")
        elif kind == "pause":
            watch.paused = True
            watch.lost(t, f"{node} paused")
        elif kind == "resume":
            watch.paused = False
            watch.maybe_recovered(t)
    if watch.outage is not None:
        start, cause = watch.outage
        watch.windows.append(Window(start, times[-1], False, cause))
    return watch.windows


def _watch_network(watch: _LeaderWatch, record: dict[str, Any], t: float) -> None:
    kind = record["kind"]
    sides = record.get("sides")
    if kind in ("partition", "one_way") and isinstance(sides, list) and len(sides) == 2:
        for a in sides[0]:
            for b in sides[1]:
                if a != b:
                    watch.blocked.add((a, b))
                    if kind == "partition":
                        watch.blocked.add((b, a))
        if watch.leader_cut():
            watch.lost(t, "leader cut off")
    elif kind == "heal":
        watch.blocked.clear()
        watch.maybe_recovered(t)


# ---- drawing ---------------------------------------------------------------------------------------
def term_colour(term: int) -> str:
    return TERM_ZERO_COLOUR if term <= 0 else TERM_COLOURS[(term - 1) % len(TERM_COLOURS)]


def format_duration(ms: float) -> str:
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.0f} ms"


@dataclass(slots=True)
class _View:
    """The visible window, in ms, and what one pixel is worth."""

    start_ms: float
    end_ms: float
    colour_terms: bool = True  # off when so many terms are in view that colours would be noise

    def colour(self, term: int) -> str:
        return term_colour(term) if self.colour_terms else MONO_COLOUR

    @property
    def span_ms(self) -> float:
        return max(self.end_ms - self.start_ms, 1e-6)

    @property
    def pixel_ms(self) -> float:
        return self.span_ms / AXIS_WIDTH_PX

    def clip(self, start_ms: float, end_ms: float) -> tuple[float, float] | None:
        low, high = max(start_ms, self.start_ms), min(end_ms, self.end_ms)
        if high < low:
            return None
        width = max(high - low, self.pixel_ms * 1.2)  # a short band still shows
        return low / 1000.0, width / 1000.0

    def visible(self, t_ms: float) -> bool:
        return self.start_ms <= t_ms <= self.end_ms


def plot_timeline(timeline: Timeline, out_path: str, *, from_s: float | None = None, to_s: float | None = None,
                  title: str | None = None, subtitle: str | None = None, zoom: bool = True) -> dict[str, Any]:
    """Draw `timeline` into `out_path` (.png or .svg) and return what was drawn, in numbers.
    With `zoom`, a failover too short to see at this scale also gets a panel of its own."""
    extension = os.path.splitext(out_path)[1].lower()
    if extension not in (".png", ".svg"):
        raise ValueError(f"the output must end in .png or .svg, got {out_path!r}")
    view = _View(timeline.start_ms if from_s is None else from_s * 1000.0,
                 timeline.end_ms if to_s is None else to_s * 1000.0)
    if view.end_ms <= view.start_ms:
        raise ValueError(f"nothing to draw between {view.start_ms / 1000:g} s and {view.end_ms / 1000:g} s")
    view.colour_terms = len(terms_in_view(timeline, view)) <= TERMS_COLOURED_MAX
    plt = _pyplot()
    scheduler = [m for m in timeline.scheduler if view.visible(m.t_ms)]
    rows = scheduler_rows(scheduler)
    lanes = len(timeline.nodes)
    windows = [w for w in timeline.windows if view.clip(w.start_ms, w.end_ms) is not None]
    focus = _zoom_target(windows, view) if zoom and lanes else None
    main_in = 1.3 + 0.72 * lanes + (0.5 + 0.32 * len(rows) if rows else 0.0)
    zoom_in = 1.2 + 0.5 * lanes if focus is not None else 0.0
    height_in = max(main_in + zoom_in + 0.7, 3.6)
    figure = plt.figure(figsize=(14, height_in))
    left = 0.09 if rows else 0.06
    grid = figure.add_gridspec(2 if focus else 1, 1, height_ratios=[main_in, zoom_in] if focus else [1],
                               left=left, right=0.80, top=1 - 0.75 / height_in, bottom=0.45 / height_in,
                               hspace=0.9 / max(main_in, 1.0) if focus else 0.0)
    ax = figure.add_subplot(grid[0])
    _draw_panel(ax, timeline, view, scheduler, rows)
    if focus is not None:
        window, zoom_view = focus
        ax.axvspan(zoom_view.start_ms / 1000.0, zoom_view.end_ms / 1000.0, color="0.5", alpha=0.12, zorder=0)
        zoom_view.colour_terms = len(terms_in_view(timeline, zoom_view)) <= TERMS_COLOURED_MAX
        zoom_ax = figure.add_subplot(grid[1])
        _draw_panel(zoom_ax, timeline, zoom_view, [], [])
        zoom_ax.set_title(f"zoom on the longest failover, at {window.start_ms / 1000:.3f} s ({window.cause}): "
                          f"no leader for {format_duration(window.duration_ms)}", fontsize=9.5, loc="left",
                          color="0.25")
    _legend(figure, ax, timeline, view, rows)
    summary = _summary(timeline, view, windows, scheduler)
    text = subtitle or _default_subtitle(summary, timeline)
    ax.set_title(textwrap.fill(text, 135), fontsize=9.5, loc="left", color="0.25")
    figure.suptitle(title or f"Raft timeline: {lanes} nodes, {_seconds(view.start_ms)}–{_seconds(view.end_ms)} s",
                    fontsize=13, x=left, ha="left", y=1 - 0.12 / height_in)
    kwargs: dict[str, Any] = {"dpi": 110} if extension == ".png" else {"metadata": {"Date": None}}
    figure.savefig(out_path, **kwargs)
    plt.close(figure)
    return summary


def _draw_panel(ax: Any, timeline: Timeline, view: _View, scheduler: list[Mark], rows: list[str]) -> None:
    lanes = len(timeline.nodes)
    for index, node in enumerate(timeline.nodes):
        _draw_lane(ax, timeline, node, lanes - 1 - index, view)
    _draw_windows(ax, [w for w in timeline.windows if view.clip(w.start_ms, w.end_ms) is not None], lanes, view)
    _draw_elections(ax, timeline, lanes, view)
    _draw_net(ax, timeline, lanes, view)
    if rows:
        _draw_scheduler(ax, scheduler, rows, view)
    _decorate(ax, timeline, lanes, rows, view)


ZOOM_WHEN_NARROWER = 0.04  # a failover under 4% of the view's width gets a zoom panel


def _zoom_target(windows: list[Window], view: _View) -> tuple[Window, _View] | None:
    """The longest closed failover (not the first election), if it is too narrow to read."""
    failovers = [w for w in windows if w.closed and w.cause != "first election"]
    if not failovers:
        return None
    window = max(failovers, key=lambda w: w.duration_ms)
    if window.duration_ms >= ZOOM_WHEN_NARROWER * view.span_ms:
        return None
    margin_ms = max(0.2 * window.duration_ms, 25.0)
    return window, _View(window.start_ms - margin_ms, window.end_ms + margin_ms)


def terms_in_view(timeline: Timeline, view: _View) -> list[int]:
    return sorted({s.term for segments in timeline.segments.values() for s in segments
                   if view.clip(s.start_ms, s.end_ms) is not None})


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    # SVG text stays text (small files, searchable), and ids are stable (same data, same bytes).
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "raftcron"
    import matplotlib.pyplot as plt

    return plt


ROLE_HEIGHT = {"follower": 0.2, "pre-candidate": 0.46, "candidate": 0.5, "leader": 0.78}


def _draw_lane(ax: Any, timeline: Timeline, node: str, y: float, view: _View) -> None:
    ax.axhline(y, color="0.88", linewidth=0.8, zorder=0)
    for span in timeline.cut.get(node, []):
        box = view.clip(span.start_ms, span.end_ms)
        if box is not None:
            ax.broken_barh([box], (y - 0.49, 0.98), facecolors="#fd8d3c", alpha=0.2, linewidth=0, zorder=1)
            ax.broken_barh([box], (y - 0.49, 0.98), facecolors="none", hatch="\\\\", edgecolor="#fd8d3c",
                           linewidth=0, zorder=4.5)
    for segment in timeline.segments.get(node, []):
        box = view.clip(segment.start_ms, segment.end_ms)
        if box is None:
            continue
        height = ROLE_HEIGHT[segment.role]
        colour = view.colour(segment.term)
        style: dict[str, Any] = {"facecolors": colour, "edgecolor": "none", "zorder": 3}
        if segment.role == "pre-candidate":
            style.update(facecolors="white", edgecolor=colour, hatch="////", linewidth=0.8)
        elif segment.role == "leader":
            style.update(edgecolor="#222222", linewidth=0.7)
        elif segment.role == "follower":
            style.update(alpha=0.7)
        ax.broken_barh([box], (y - height / 2, height), **style)
        if segment.role == "leader" and box[1] * 1000 > 60 * view.pixel_ms:
            ax.text(box[0] + box[1] / 2, y, f"leader T{segment.term}", ha="center", va="center", fontsize=8,
                    color="white", fontweight="bold", zorder=4, clip_on=True)
    for span in timeline.down.get(node, []):
        box = view.clip(span.start_ms, span.end_ms)
        if box is not None:
            ax.broken_barh([box], (y - 0.4, 0.8), facecolors="#d9d9d9", edgecolor="#8c8c8c", hatch="xx",
                           linewidth=0.6, zorder=3)
            if box[1] * 1000 > 40 * view.pixel_ms:
                ax.text(box[0] + box[1] / 2, y, "down", ha="center", va="center", fontsize=8, color="0.25",
                        zorder=4, clip_on=True, bbox={"facecolor": "#d9d9d9", "edgecolor": "none", "pad": 1})
    for span in timeline.paused.get(node, []):
        box = view.clip(span.start_ms, span.end_ms)
        if box is not None:
            ax.broken_barh([box], (y - 0.42, 0.84), facecolors="none", edgecolor="#555555", hatch="..",
                           linewidth=0.8, linestyle="--", zorder=4)
    _draw_node_marks(ax, [m for m in timeline.node_marks if m.node == node and view.visible(m.t_ms)], y, view)


MARK_STYLES: dict[str, dict[str, Any]] = {
    "campaign": {"marker": "^", "markersize": 7, "offset": 0.3},
    "pre-campaign": {"marker": "^", "markersize": 7, "offset": 0.3, "hollow": True},
    "vote granted": {"marker": "o", "markersize": 3.5, "offset": -0.3, "colour": "#2b8a3e"},
    "vote denied": {"marker": "x", "markersize": 4.5, "offset": -0.3, "colour": "#c92a2a"},
    "clock jump": {"marker": "D", "markersize": 5, "offset": 0.0, "colour": "#862e9c"},
    "transfer": {"marker": "P", "markersize": 6, "offset": 0.3, "colour": "#1864ab"},
}


def _mark_style(mark: Mark) -> str:
    if mark.kind == "campaign":
        return "pre-campaign" if mark.fields.get("pre_vote") else "campaign"
    if mark.kind == "vote":
        return "vote granted" if mark.fields.get("granted") else "vote denied"
    if mark.kind == "clock_jump":
        return "clock jump"
    return "transfer"


def _draw_node_marks(ax: Any, marks: list[Mark], y: float, view: _View) -> None:
    by_style: dict[str, list[Mark]] = {}
    for mark in marks:
        by_style.setdefault(_mark_style(mark), []).append(mark)
    for name, group in by_style.items():
        style = MARK_STYLES[name]
        ys = y + style["offset"]
        if len(group) > MARKS_PER_LANE_MAX:
            _histogram(ax, [m.t_ms for m in group], ys, style.get("colour", "#495057"), view)
            ax.text(view.end_ms / 1000.0, ys, f"{len(group)} × {name} (binned) ", ha="right", va="center",
                    fontsize=7, color=style.get("colour", "#495057"), zorder=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})
            continue
        xs = [m.t_ms / 1000.0 for m in group]
        if "colour" in style:
            ax.plot(xs, [ys] * len(xs), linestyle="none", marker=style["marker"], markersize=style["markersize"],
                    color=style["colour"], zorder=5, alpha=0.85)
            continue
        for mark in group:  # campaigns: in the colour of the term they ask for
            colour = view.colour(_int(mark.fields.get("term"), 0))
            ax.plot([mark.t_ms / 1000.0], [ys], linestyle="none", marker=style["marker"],
                    markersize=style["markersize"], markeredgecolor=colour, markeredgewidth=1.2,
                    markerfacecolor="white" if style.get("hollow") else colour, zorder=5)


def _histogram(ax: Any, times_ms: Iterable[float], y: float, colour: str, view: _View) -> None:
    """Too many marks to draw one by one: their count per bin, as bars up to 0.18 lane high."""
    bins = 240
    width_ms = view.span_ms / bins
    counts = Counter(min(bins - 1, int((t - view.start_ms) / width_ms)) for t in times_ms)
    top = max(counts.values())
    for index, count in counts.items():
        left = (view.start_ms + index * width_ms) / 1000.0
        ax.bar(left, 0.18 * count / top, width=width_ms / 1000.0, bottom=y - 0.09, align="edge",
               color=colour, alpha=0.75, linewidth=0, zorder=5)


def _draw_windows(ax: Any, windows: list[Window], lanes: int, view: _View) -> None:
    """Red over every lane while there is no leader, a red bar in the header, and the duration of
    the longest ones written above it (alternating between two rows so neighbours don't collide)."""
    annotated = sorted(windows, key=lambda w: -w.duration_ms)[:ANNOTATED_WINDOWS_MAX]
    bar_y = lanes - 0.32
    for window in windows:
        box = view.clip(window.start_ms, window.end_ms)
        assert box is not None
        ax.broken_barh([box], (-0.5, lanes), facecolors=NO_LEADER_COLOUR, alpha=0.13, linewidth=0, zorder=2)
        ax.plot([box[0], box[0] + box[1]], [bar_y] * 2, color=NO_LEADER_COLOUR, linewidth=3,
                solid_capstyle="butt", zorder=6)
    short = len(windows) > 4  # crowded: the legend says what the red bar means
    items = []
    for window in sorted(annotated, key=lambda w: w.start_ms):
        box = view.clip(window.start_ms, window.end_ms)
        assert box is not None
        label = format_duration(window.duration_ms) if short else f"no leader {format_duration(window.duration_ms)}"
        label += "" if window.closed else "+"
        if window.cause == "first election" and not short:
            label += " (first election)"
        items.append((box[0] + box[1] / 2, label))
    for x, row, label in place_labels(items, view, rows=2, fontsize=9):
        ax.annotate(label, xy=(x, bar_y), xytext=(x, bar_y + 0.3 + 0.3 * row), ha=_align(x, view),
                    va="center", fontsize=9, color=NO_LEADER_COLOUR, fontweight="bold", zorder=7,
                    annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": NO_LEADER_COLOUR, "linewidth": 0.7,
                                "shrinkA": 0, "shrinkB": 0})


def place_labels(items: Sequence[tuple[float, str]], view: _View, *, rows: int, fontsize: float
                 ) -> list[tuple[float, int, str]]:
    """Greedy placement left to right: each label takes the first row where it clears the last
    label by a few pixels; a label that fits nowhere is left out (its mark stays)."""
    char_ms = 0.62 * fontsize * 110 / 72 * view.pixel_ms
    row_end = [-math.inf] * rows
    placed = []
    for x_s, label in sorted(items):
        width_ms = (len(label) + 1) * char_ms
        align = _align(x_s, view)
        left = x_s * 1000.0 - {"left": 0.0, "center": width_ms / 2, "right": width_ms}[align]
        for row in range(rows):
            if left > row_end[row]:
                row_end[row] = left + width_ms
                placed.append((x_s, row, label))
                break
    return placed


def _align(x_s: float, view: _View) -> str:
    """Text near an edge grows inwards, so it is never cut off."""
    where = (x_s * 1000.0 - view.start_ms) / view.span_ms
    return "left" if where < 0.1 else "right" if where > 0.9 else "center"


def _draw_elections(ax: Any, timeline: Timeline, lanes: int, view: _View) -> None:
    elections = [m for m in timeline.elections if view.visible(m.t_ms)]
    for mark in elections:
        colour = view.colour(_int(mark.fields.get("term"), 0))
        ax.axvline(mark.t_ms / 1000.0, ymin=0, ymax=1, color=colour, linewidth=1.0, linestyle=(0, (4, 3)),
                   zorder=2.5, alpha=0.9)
    items = [(m.t_ms / 1000.0, f"{m.node} T{m.fields.get('term')}") for m in elections]
    terms = {f"{m.node} T{m.fields.get('term')}": _int(m.fields.get("term"), 0) for m in elections}
    for x, _row, label in place_labels(items, view, rows=1, fontsize=8):
        ax.text(x, -0.6, label, ha=_align(x, view), va="top", fontsize=8, color=view.colour(terms[label]),
                fontweight="bold", zorder=7)


def _draw_net(ax: Any, timeline: Timeline, lanes: int, view: _View) -> None:
    """Message loss and duplication over time, as a strip along the top of the header; other
    network-wide events (the liveness core...) as labelled ticks."""
    levels: list[tuple[float, float, float]] = [(timeline.start_ms, 0.0, 0.0)]
    others = []
    for mark in timeline.net_marks:
        if mark.kind == "net":
            levels.append((mark.t_ms, _number(mark.fields.get("loss")), _number(mark.fields.get("dup"))))
        elif mark.kind not in ("partition", "one_way", "heal") and view.visible(mark.t_ms):
            others.append((mark.t_ms / 1000.0, mark.kind))
    if len(levels) > 1:
        _draw_network_strip(ax, levels, lanes, view)
    for x, _row, label in place_labels(others, view, rows=1, fontsize=7.5):
        ax.plot([x, x], [lanes - 0.5, lanes + 0.95], color="#495057", linewidth=0.8, linestyle=":", zorder=6)
        ax.text(x, lanes + 0.95, " " + label, fontsize=7.5, color="#495057", ha="left", va="top", zorder=6,
                clip_on=True)


def _number(value: Any) -> float:
    return float(value) if _is_time(value) else 0.0


def _draw_network_strip(ax: Any, levels: list[tuple[float, float, float]], lanes: int, view: _View) -> None:
    top = max(max(loss, dup) for _t, loss, dup in levels) or 1.0
    xs = [t / 1000.0 for t, _loss, _dup in levels] + [view.end_ms / 1000.0]
    base, height = lanes + 0.62, 0.3
    for index, (colour, label) in enumerate((("#c92a2a", "loss"), ("#1864ab", "dup"))):
        ys = [base + height * level[1 + index] / top for level in levels]
        ax.fill_between(xs, base, ys + [ys[-1]], step="post", color=colour, alpha=0.35, linewidth=0, zorder=5)
    ax.plot([view.start_ms / 1000.0, view.end_ms / 1000.0], [base, base], color="0.8", linewidth=0.6)
    ax.text(view.start_ms / 1000.0, base + height / 2, f"loss/dup\n(max {top:.0%}) ", ha="right",
            va="center", fontsize=7.5, color="#495057", linespacing=1.0)


def scheduler_rows(marks: Sequence[Mark]) -> list[str]:
    """One row per kind present, except that starts and finishes share an `exec` row."""
    kinds = {m.kind for m in marks}
    rows = []
    for kind in SCHEDULER_KINDS:
        if kind in kinds:
            name = "exec" if kind in ("exec_start", "exec_finish") else kind
            if name not in rows:
                rows.append(name)
    return rows


ATTEMPT_FIELDS = ("job", "tick", "slot", "attempt")


def _attempt_key(mark: Mark) -> tuple[Any, ...] | None:
    key = tuple(mark.fields.get(name) for name in ATTEMPT_FIELDS)
    if all(part is None for part in key):
        return None
    return (mark.node, *(json.dumps(part, sort_keys=True) for part in key))


def _draw_scheduler(ax: Any, marks: list[Mark], rows: list[str], view: _View) -> None:
    ax.axhline(-0.95, color="0.55", linewidth=0.8)
    for index, row in enumerate(rows):
        y = -1.4 - 0.5 * index
        ax.axhline(y, color="0.93", linewidth=0.6, zorder=0)
        if row == "exec":
            _draw_executions(ax, [m for m in marks if m.kind in ("exec_start", "exec_finish")], y, view)
            group = [m for m in marks if m.kind == "exec_start"]  # count attempts, not events
            colour = "#1864ab"
        else:
            group = [m for m in marks if m.kind == row]
            warning = row in WARNING_KINDS
            colour = WARNING_COLOUR if warning else {"fire": "#2b8a3e", "skip": "#868e96"}.get(row, "#1864ab")
            if len(group) > MARKS_PER_LANE_MAX * 2:
                _histogram(ax, [m.t_ms for m in group], y, colour, view)
            else:
                marker = {"fire": "|", "skip": "o"}.get(row, "X")
                ax.plot([m.t_ms / 1000.0 for m in group], [y] * len(group), linestyle="none", marker=marker,
                        markersize=9 if warning else 8, color=colour, markeredgewidth=1.6, zorder=5)
        ax.text(view.start_ms / 1000.0, y, f"{row.replace('_', ' ')} ({len(group)}) ", ha="right", va="center",
                fontsize=8, color=colour, fontweight="bold" if row in WARNING_KINDS else "normal")


def _draw_executions(ax: Any, marks: list[Mark], y: float, view: _View) -> None:
    """A bar from each attempt's start to its finish (matched on job, tick, slot, attempt);
    a start with no finish in the trace is a triangle, a finish with no start a square."""
    starts: dict[tuple[Any, ...], float] = {}
    lone_starts, lone_finishes, bars = [], [], []
    for mark in sorted(marks, key=lambda m: m.t_ms):
        key = _attempt_key(mark)
        if mark.kind == "exec_start":
            if key is None:
                lone_starts.append(mark.t_ms)
            else:
                starts[key] = mark.t_ms
        elif key is not None and key in starts:
            bars.append((starts.pop(key), mark.t_ms))
        else:
            lone_finishes.append(mark.t_ms)
    lone_starts += list(starts.values())
    if len(bars) > MARKS_PER_LANE_MAX * 2:
        _histogram(ax, [start for start, _end in bars], y, "#1864ab", view)
    else:
        boxes = [box for box in (view.clip(start, end) for start, end in bars) if box is not None]
        ax.broken_barh(boxes, (y - 0.13, 0.26), facecolors="#1864ab", alpha=0.8, linewidth=0, zorder=5)
    for times, marker in ((lone_starts, ">"), (lone_finishes, "s")):
        ax.plot([t / 1000.0 for t in times], [y] * len(times), linestyle="none", marker=marker, markersize=6,
                color="#1864ab", zorder=5)


def _decorate(ax: Any, timeline: Timeline, lanes: int, rows: list[str], view: _View) -> None:
    ax.set_xlim(view.start_ms / 1000.0, view.end_ms / 1000.0)
    bottom = -1.4 - 0.5 * (len(rows) - 1) - 0.45 if rows else -0.95
    ax.set_ylim(bottom, lanes + 1.0)  # above the lanes: the header with the no-leader durations
    ax.set_yticks([lanes - 1 - i for i in range(lanes)], timeline.nodes, fontsize=10)
    ax.tick_params(axis="y", length=0)
    clock = "true time" if timeline.time_field == "t" else "local clock"
    ax.set_xlabel(f"{clock} (s)")
    ax.grid(True, axis="x", alpha=0.25, zorder=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if rows:
        ax.text(view.start_ms / 1000.0, -0.98, "scheduler ", ha="right", va="top", fontsize=9,
                fontweight="bold", color="0.3")


def _legend(figure: Any, ax: Any, timeline: Timeline, view: _View, rows: list[str]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grey = "#7f8c99"
    handles = [
        Patch(facecolor=grey, alpha=0.7, label="follower (thin band)"),
        Patch(facecolor="white", edgecolor=grey, hatch="////", label="pre-candidate"),
        Patch(facecolor=grey, label="candidate"),
        Patch(facecolor=grey, edgecolor="#222222", label="leader (full band)"),
        Patch(facecolor="#d9d9d9", edgecolor="#8c8c8c", hatch="xx", label="crashed (down)"),
        Patch(facecolor="none", edgecolor="#555555", hatch="..", linestyle="--", label="paused"),
        Patch(facecolor="#fd8d3c", alpha=0.35, hatch="\\\\", label="partitioned / one-way cut"),
        Patch(facecolor=NO_LEADER_COLOUR, alpha=0.25, label="no leader"),
        Line2D([], [], color=grey, linestyle=(0, (4, 3)), label="new leader (node, term)"),
        Line2D([], [], marker="^", color=grey, linestyle="none", label="campaign (vote)"),
        Line2D([], [], marker="^", markerfacecolor="white", markeredgecolor=grey, linestyle="none",
               label="campaign (pre-vote)"),
        Line2D([], [], marker="o", markersize=4, color="#2b8a3e", linestyle="none", label="vote granted"),
        Line2D([], [], marker="x", color="#c92a2a", linestyle="none", label="vote denied"),
    ]
    if any(m.kind == "net" for m in timeline.net_marks):
        handles.append(Patch(facecolor="#c92a2a", alpha=0.35, label="message loss (top strip)"))
        handles.append(Patch(facecolor="#1864ab", alpha=0.35, label="duplication (top strip)"))
    if any(m.kind == "clock_jump" for m in timeline.node_marks):
        handles.append(Line2D([], [], marker="D", markersize=5, color="#862e9c", linestyle="none",
                              label="clock jump"))
    terms = terms_in_view(timeline, view)
    handles.append(Patch(facecolor="none", edgecolor="none", label=""))
    if not view.colour_terms:
        handles.append(Patch(facecolor=MONO_COLOUR, label=f"{len(terms)} terms in view:\ntoo many to colour"))
    else:
        cycles = f" (cycles every {len(TERM_COLOURS)})" if len(terms) > len(TERM_COLOURS) else ""
        handles.append(Patch(facecolor="none", edgecolor="none", label=f"colour = term{cycles}"))
        handles += [Patch(facecolor=term_colour(t), label=f"term {t}") for t in terms[-len(TERM_COLOURS):]]
    figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.815, 0.96), fontsize=8.5, frameon=False,
                  title="roles and events", title_fontsize=9.5, alignment="left", handlelength=2.2)


def _summary(timeline: Timeline, view: _View, windows: list[Window], scheduler: list[Mark]) -> dict[str, Any]:
    return {
        "nodes": timeline.nodes,
        "from_s": round(view.start_ms / 1000.0, 6),
        "to_s": round(view.end_ms / 1000.0, 6),
        "leaders": [{"node": m.node, "term": m.fields.get("term"), "at_s": round(m.t_ms / 1000.0, 6)}
                    for m in timeline.elections if view.visible(m.t_ms)],
        "leaderless": [{"from_s": round(w.start_ms / 1000.0, 6), "duration_ms": round(w.duration_ms, 3),
                        "closed": w.closed, "cause": w.cause} for w in windows],
        "leaderless_measured": timeline.windows_measured,
        "scheduler": dict(Counter(m.kind for m in scheduler)),
        "warnings": sum(1 for m in scheduler if m.kind in WARNING_KINDS),
    }


def _default_subtitle(summary: dict[str, Any], timeline: Timeline) -> str:
    leaders = summary["leaders"]
    windows = summary["leaderless"]
    parts = [f"{len(leaders)} leader election{'s' if len(leaders) != 1 else ''}"]
    if windows:
        longest = max(w["duration_ms"] for w in windows)
        total = sum(w["duration_ms"] for w in windows)
        parts.append(f"{len(windows)} period{'s' if len(windows) != 1 else ''} without a leader "
                     f"(total {format_duration(total)}, longest {format_duration(longest)})")
    how = ("leader lost → a quorum heard the new leader (FailoverMeter)" if timeline.windows_measured == "meter"
           else "leader lost → the new leader committed its first entry")
    parts.append(f"no leader = {how}")
    if summary["scheduler"]:
        parts.append(f"{sum(summary['scheduler'].values())} scheduler events, {summary['warnings']} warnings")
    return "; ".join(parts)


def _seconds(ms: float) -> str:
    return f"{round(ms / 1000.0, 3):g}"
