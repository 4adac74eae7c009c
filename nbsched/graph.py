"""The dependency graph of a scheduler's jobs, drawn as SVG here (no graphviz, no system package).

:meth:`nbsched.Scheduler.graph` builds a :class:`JobGraph` from the jobs; this module only lays it
out and draws it.  The layout is layered by depth: a job with no upstreams is in column 0, every
other job one column right of its deepest upstream (the longest path from a root), so edges always
point right.  Within a column jobs are ordered by the average row of their upstreams (one
barycentre pass: fewer crossings, still deterministic), ties in the order the jobs were added.

Nodes are coloured by the job's last outcome (:data:`OUTCOME_COLOURS`, a legend below), a paused job
has a dashed border, and an edge into a job whose trigger rule is not ``all_success`` is labelled
with the rule.  The picture is one ``image/svg+xml`` output, which JupyterLab shows and nbconvert's
HTML export inlines; ``text/plain`` lists the edges.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .job import DEFAULT_TRIGGER_RULE


def escape(text: str) -> str:
    """``xml.sax.saxutils.escape``, imported when a graph is first drawn (that module pulls in urllib,
    http.client and email: about 2 MB a kernel would hold for nothing until then)."""
    from xml.sax.saxutils import escape as _escape

    return _escape(text)


def quoteattr(text: str) -> str:
    """``xml.sax.saxutils.quoteattr``, imported when first used (see :func:`escape`)."""
    from xml.sax.saxutils import quoteattr as _quoteattr

    return _quoteattr(text)


__all__ = ["GraphNode", "GraphEdge", "JobGraph", "OUTCOME_COLOURS", "NEVER_RAN", "DEFAULT_RULE"]

DEFAULT_RULE = DEFAULT_TRIGGER_RULE  # the rule edges are not labelled with

#: last outcome -> (fill, border).  ``None`` (never ran) uses :data:`NEVER_RAN`.
OUTCOME_COLOURS: dict[str, tuple[str, str]] = {
    "success": ("#c8e6c9", "#2e7d32"),
    "error": ("#ffcdd2", "#c62828"),
    "timeout": ("#ffcdd2", "#c62828"),
    "upstream_failed": ("#ffe0b2", "#e65100"),
    "skipped": ("#eeeeee", "#757575"),
    "interrupted": ("#e1bee7", "#6a1b9a"),
    "cancelled": ("#e1bee7", "#6a1b9a"),
    "missed": ("#fff9c4", "#f9a825"),
}
NEVER_RAN: tuple[str, str] = ("#ffffff", "#9e9e9e")

_FONT = "font-family='-apple-system,Segoe UI,Helvetica,Arial,sans-serif'"
_CHAR_W = 7.0  # average width of a 12px sans-serif character, for sizing boxes
_NODE_H, _ROW_GAP, _COL_GAP, _PAD = 44, 18, 70, 16
_MIN_W, _MAX_CHARS = 96, 34


@dataclass(frozen=True)
class GraphNode:
    """A job in the graph: its name, trigger in words, state and last outcome (None: never ran)."""

    name: str
    trigger: str
    state: str
    outcome: str | None


@dataclass(frozen=True)
class GraphEdge:
    """``downstream`` runs after ``upstream``; ``rule`` is the downstream job's trigger rule."""

    upstream: str
    downstream: str
    rule: str = DEFAULT_RULE


def _short(text: str, limit: int = _MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class JobGraph:
    """Jobs and the ``after`` edges between them; shows itself as an SVG picture in a notebook.

    ``nodes`` and ``edges`` are tuples of :class:`GraphNode` / :class:`GraphEdge`; :meth:`layers`
    gives the columns of the layout, :meth:`to_svg` the picture, :meth:`save` writes it to a file.
    """

    def __init__(self, nodes: Iterable[GraphNode], edges: Iterable[GraphEdge]):
        self.nodes: tuple[GraphNode, ...] = tuple(nodes)
        known = {n.name for n in self.nodes}
        # an edge from a job outside the graph (a removed upstream) cannot be drawn: leave it out
        self.edges: tuple[GraphEdge, ...] = tuple(e for e in edges if e.upstream in known and e.downstream in known)
        self._svg: str | None = None

    # ------------------------------------------------------------------------------- layout
    def depths(self) -> dict[str, int]:
        """Each job's column: 0 for a job with no upstreams, else 1 + its deepest upstream's."""
        ups: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        downs: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for e in self.edges:
            ups[e.downstream].append(e.upstream)
            downs[e.upstream].append(e.downstream)
        waiting = {name: len(u) for name, u in ups.items()}
        depth = {name: 0 for name in ups}
        ready = [name for name, count in waiting.items() if count == 0]
        # Kahn's order, iteratively: a chain of thousands of jobs needs no recursion
        while ready:
            name = ready.pop()
            for d in downs[name]:
                if depth[name] + 1 > depth[d]:
                    depth[d] = depth[name] + 1
                waiting[d] -= 1
                if waiting[d] == 0:
                    ready.append(d)
        return depth  # (the scheduler refuses cycles; a job on one would simply stay in column 0)

    def layers(self) -> list[list[str]]:
        """The columns, left to right, each ordered top to bottom."""
        depth = self.depths()
        order = {n.name: i for i, n in enumerate(self.nodes)}
        ups: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for e in self.edges:
            ups[e.downstream].append(e.upstream)
        columns: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for n in self.nodes:
            columns[depth[n.name]].append(n.name)
        row: dict[str, float] = {}
        for c, column in enumerate(columns):
            if c:
                column.sort(key=lambda name: (sum(row[u] for u in ups[name]) / len(ups[name]), order[name]))
            for r, name in enumerate(column):
                row[name] = r
        return columns

    # ------------------------------------------------------------------------------ drawing
    def to_svg(self) -> str:
        """The picture as a standalone SVG document (cached: the graph is a snapshot)."""
        if self._svg is None:
            self._svg = self._draw()
        return self._svg

    def _draw(self) -> str:
        nodes = {n.name: n for n in self.nodes}
        columns = self.layers()
        widths = []
        for column in columns:
            chars = max((max(len(_short(n)), len(_short(nodes[n].trigger))) for n in column), default=0)
            widths.append(max(_MIN_W, int(chars * _CHAR_W) + 20))
        tallest = max((len(c) for c in columns), default=0)
        body_h = tallest * _NODE_H + max(tallest - 1, 0) * _ROW_GAP
        pos: dict[str, tuple[float, float, float]] = {}  # name -> (x, y, width)
        x = _PAD
        for column, width in zip(columns, widths):
            height = len(column) * _NODE_H + max(len(column) - 1, 0) * _ROW_GAP
            y = _PAD + (body_h - height) / 2
            for name in column:
                pos[name] = (x, y, width)
                y += _NODE_H + _ROW_GAP
            x += width + _COL_GAP
        legend = self._legend_items()
        width = max(x - _COL_GAP + _PAD, _PAD * 2 + sum(len(label) * _CHAR_W + 34 for label, _ in legend), 200)
        height = _PAD + body_h + 16 + 20 + _PAD
        out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
               f"viewBox='0 0 {width:.0f} {height:.0f}' class='nbsched-graph' {_FONT} font-size='12'>",
               "<defs><marker id='nbsched-arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
               "markerHeight='7' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#616161'/></marker></defs>",
               f"<title>{escape(f'{len(self.nodes)} job(s), {len(self.edges)} dependency edge(s)')}</title>"]
        for e in self.edges:
            out.append(self._edge(e, pos))
        for name, (nx, ny, nw) in pos.items():
            out.append(self._node(nodes[name], nx, ny, nw))
        out.append(self._legend(legend, _PAD, _PAD + body_h + 16))
        out.append("</svg>")
        return "\n".join(out)

    @staticmethod
    def _edge(e: GraphEdge, pos: dict) -> str:
        ux, uy, uw = pos[e.upstream]
        dx, dy, _ = pos[e.downstream]
        x1, y1, x2, y2 = ux + uw, uy + _NODE_H / 2, dx, dy + _NODE_H / 2
        bend = max((x2 - x1) / 2, 20)
        path = (f"<path d='M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}' "
                "fill='none' stroke='#616161' stroke-width='1.4' marker-end='url(#nbsched-arrow)'/>")
        label = ""
        if e.rule != DEFAULT_RULE:
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2 - 4
            label = (f"<text class='rule' x='{mx:.1f}' y='{my:.1f}' text-anchor='middle' fill='#37474f' "
                     f"font-size='11' stroke='#ffffff' stroke-width='3' paint-order='stroke'>{escape(e.rule)}</text>")
        return (f"<g class='edge' data-from={quoteattr(e.upstream)} data-to={quoteattr(e.downstream)} "
                f"data-rule={quoteattr(e.rule)}><title>{escape(f'{e.downstream} runs after {e.upstream} ({e.rule})')}"
                f"</title>{path}{label}</g>")

    @staticmethod
    def _node(n: GraphNode, x: float, y: float, w: float) -> str:
        fill, stroke = OUTCOME_COLOURS.get(n.outcome, NEVER_RAN) if n.outcome else NEVER_RAN
        dash = " stroke-dasharray='5,3'" if n.state == "paused" else ""
        tip = f"{n.name}: {n.trigger}; {n.state}; last outcome {n.outcome or 'none yet'}"
        return (f"<g class='node' data-job={quoteattr(n.name)} data-outcome={quoteattr(n.outcome or 'none')} "
                f"data-state={quoteattr(n.state)}><title>{escape(tip)}</title>"
                f"<rect x='{x:.1f}' y='{y:.1f}' width='{w:.0f}' height='{_NODE_H}' rx='7' fill='{fill}' "
                f"stroke='{stroke}' stroke-width='1.6'{dash}/>"
                f"<text class='name' x='{x + 10:.1f}' y='{y + 18:.1f}' font-weight='600' fill='#212121'>"
                f"{escape(_short(n.name))}</text>"
                f"<text class='trigger' x='{x + 10:.1f}' y='{y + 34:.1f}' fill='#616161' font-size='11'>"
                f"{escape(_short(n.trigger))}</text></g>")

    def _legend_items(self) -> list[tuple[str, tuple[str, str]]]:
        seen = []
        for n in self.nodes:
            key = n.outcome or "none yet"
            if key not in seen:
                seen.append(key)
        return [(key, OUTCOME_COLOURS.get(key, NEVER_RAN)) for key in seen]

    @staticmethod
    def _legend(items: list, x: float, y: float) -> str:
        parts = ["<g class='legend'>"]
        for label, (fill, stroke) in items:
            parts.append(f"<g class='legend-item' data-outcome={quoteattr(label)}><rect x='{x:.1f}' y='{y:.1f}' "
                         f"width='14' height='14' rx='3' fill='{fill}' stroke='{stroke}'/>"
                         f"<text x='{x + 19:.1f}' y='{y + 11:.1f}' fill='#424242' font-size='11'>{escape(label)}</text></g>")
            x += len(label) * _CHAR_W + 34
        parts.append("</g>")
        return "".join(parts)

    # ----------------------------------------------------------------------- presentation
    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"image/svg+xml": self.to_svg(), "text/plain": repr(self)}

    def save(self, path: str) -> str:
        """Write the SVG to ``path`` (e.g. ``"pipeline.svg"``); returns the path."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_svg())
        return path

    def __repr__(self) -> str:
        lines = [f"<JobGraph: {len(self.nodes)} job(s), {len(self.edges)} edge(s)>"]
        edged = set()
        for e in self.edges:
            rule = "" if e.rule == DEFAULT_RULE else f" [{e.rule}]"
            lines.append(f"  {e.upstream} -> {e.downstream}{rule}")
            edged.update((e.upstream, e.downstream))
        lines.extend(f"  {n.name}" for n in self.nodes if n.name not in edged)
        return "\n".join(lines)
