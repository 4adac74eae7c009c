"""Scheduler.graph(): the dependency graph as SVG (nbsched.graph), read back with xml.etree."""
import xml.etree.ElementTree as ET

import pytest

import nbsched
from nbsched import Branch
from nbsched.graph import NEVER_RAN, OUTCOME_COLOURS, GraphEdge, GraphNode, JobGraph

SVG = "{http://www.w3.org/2000/svg}"


def parse(graph):
    root = ET.fromstring(graph.to_svg())
    assert root.tag == SVG + "svg"
    nodes = {}
    for g in root.iter(SVG + "g"):
        if g.get("class") == "node":
            rect = g.find(SVG + "rect")
            texts = {t.get("class"): t.text for t in g.findall(SVG + "text")}
            nodes[g.get("data-job")] = {
                "fill": rect.get("fill"), "stroke": rect.get("stroke"), "dashed": rect.get("stroke-dasharray") is not None,
                "outcome": g.get("data-outcome"), "state": g.get("data-state"), "name": texts["name"],
                "trigger": texts["trigger"], "x": float(rect.get("x")), "y": float(rect.get("y")),
            }
    edges = {}
    for g in root.iter(SVG + "g"):
        if g.get("class") == "edge":
            label = g.find(SVG + "text")
            edges[(g.get("data-from"), g.get("data-to"))] = None if label is None else label.text
    legend = [g.get("data-outcome") for g in root.iter(SVG + "g") if g.get("class") == "legend-item"]
    return root, nodes, edges, legend


def fail():
    raise RuntimeError("boom")


async def test_every_job_edge_rule_and_outcome_colour_is_drawn(sched, clock):
    sched.add(lambda: 1, "every 10s", name="fetch")
    sched.add(lambda: Branch("report"), "after fetch", name="clean")
    sched.add(lambda: 3, "after clean", name="report")
    sched.add(lambda: 4, "after clean", name="archive")
    sched.add(fail, "every 10s", name="weather")
    sched.add(lambda: 5, "after weather", name="model")
    sched.add(lambda: 6, "after fetch, weather", name="alert", trigger_rule="one_failed")
    sched.add(lambda: 7, "every 1h", name="idle", paused=True)
    await clock.advance(10)

    root, nodes, edges, legend = parse(sched.graph())
    shown = {name: n["outcome"] for name, n in nodes.items()}
    assert shown == {"fetch": "success", "clean": "success", "report": "success", "archive": "skipped",
                     "weather": "error", "model": "upstream_failed", "alert": "success", "idle": "none"}
    for name, n in nodes.items():
        assert (n["fill"], n["stroke"]) == OUTCOME_COLOURS.get(n["outcome"], NEVER_RAN), name
        assert n["name"] == name
    assert nodes["idle"]["dashed"] and nodes["idle"]["state"] == "paused"
    assert not nodes["fetch"]["dashed"]
    assert nodes["alert"]["trigger"] == "after fetch and weather"
    assert edges == {("fetch", "clean"): None, ("clean", "report"): None, ("clean", "archive"): None,
                     ("weather", "model"): None, ("fetch", "alert"): "one_failed", ("weather", "alert"): "one_failed"}
    assert legend == ["success", "skipped", "error", "upstream_failed", "none yet"]
    # columns by depth, edges pointing right
    x = {name: n["x"] for name, n in nodes.items()}
    assert x["fetch"] == x["weather"] == x["idle"] < x["clean"] == x["model"] == x["alert"] < x["report"] == x["archive"]
    assert sched.graph().layers() == [["fetch", "weather", "idle"], ["clean", "alert", "model"], ["report", "archive"]]


async def test_graph_of_one_job_shows_everything_connected_to_it(sched, clock):
    sched.add(lambda: 1, "every 10s", name="a")
    sched.add(lambda: 1, "after a", name="b")
    sched.add(lambda: 1, "after b", name="c")
    sched.add(lambda: 1, "every 10s", name="x")
    sched.add(lambda: 1, "after x", name="y")
    assert [n.name for n in sched.graph("b").nodes] == ["a", "b", "c"]
    assert [(e.upstream, e.downstream) for e in sched.graph("y").edges] == [("x", "y")]
    with pytest.raises(nbsched.JobLookupError, match="no job named 'nope'"):
        sched.graph("nope")


async def test_text_form_lists_the_edges_and_lonely_jobs(sched):
    sched.add(lambda: 1, "every 10s", name="a")
    sched.add(lambda: 1, "after a", name="b", trigger_rule="all_done")
    sched.add(lambda: 1, "every 1h", name="solo")
    graph = sched.graph()
    assert repr(graph) == "<JobGraph: 3 job(s), 1 edge(s)>\n  a -> b [all_done]\n  solo"
    bundle = graph._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "text/plain"} and bundle["text/plain"] == repr(graph)


def test_names_are_escaped_and_long_chains_lay_out_without_recursion(tmp_path):
    nodes = [GraphNode(f"<j{i}&>", "after x", "scheduled", None) for i in range(1500)]
    edges = [GraphEdge(f"<j{i}&>", f"<j{i + 1}&>", "all_success") for i in range(1499)]
    graph = JobGraph(nodes, edges)
    assert graph.depths()["<j1499&>"] == 1499
    root, parsed, drawn, _ = parse(graph)
    assert len(parsed) == 1500 and len(drawn) == 1499 and parsed["<j0&>"]["name"] == "<j0&>"
    path = graph.save(str(tmp_path / "g.svg"))
    assert ET.parse(path).getroot().tag == SVG + "svg"


def test_an_edge_from_a_job_outside_the_graph_is_left_out():
    graph = JobGraph([GraphNode("b", "after a", "scheduled", None)], [GraphEdge("a", "b")])
    assert graph.edges == () and graph.layers() == [["b"]]


def test_nbconvert_html_inlines_the_picture():
    nbconvert = pytest.importorskip("nbconvert")
    import nbformat

    graph = JobGraph([GraphNode("fetch", "every 5m", "scheduled", "success"),
                      GraphNode("alert", "after fetch", "scheduled", None)], [GraphEdge("fetch", "alert", "one_failed")])
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%schedule graph")
    cell.outputs = [nbformat.v4.new_output("execute_result", data=graph._repr_mimebundle_(), execution_count=1)]
    nb.cells = [cell]
    html, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    import base64
    import re

    # nbconvert's page shows the image/svg+xml output as a picture (an <img> with the SVG as a data
    # URI in the lab template, inline <svg> in older ones): no image file, no graphviz
    inline = re.search(r'data-mime-type="image/svg\+xml"[^>]*>\s*<img [^>]*src="data:image/svg\+xml;base64,([^"]+)"', html)
    shown = base64.b64decode(inline.group(1)).decode() if inline else html[html.index("<svg xmlns"):]
    assert shown.startswith(graph.to_svg())
