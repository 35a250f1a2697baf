"""The Grafana dashboard asks only for what the preview's ``/metrics`` serves.

The metric names, labels and label values come from a real scrape: the container's camera config
(deploy/config/camera.yaml) run on the bundled street clip with its preview on a free local port, and
``/metrics`` fetched over HTTP while the last frame goes out.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamvision.config import parse_config, read_yaml
from streamvision.pipeline import Pipeline
from streamvision.sinks.preview import PreviewSink

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "streamvision-dashboard.json"
FRAMES = 40

TARGET_LABELS = {"instance", "job"}
"""Labels Prometheus itself puts on every scraped series."""
FUNCTIONS = {"rate", "irate", "increase", "histogram_quantile", "sum", "avg", "min", "max", "count", "topk"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<range>\[[^\]]*\])
      | (?P<ident>[A-Za-z_:][\w:]*)
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^(){},=<>])
    )""",
    re.VERBOSE,
)


@dataclass
class Scrape:
    """What one ``/metrics`` answer holds: per sample name, its label names and the values seen."""

    families: dict[str, set[str]] = field(default_factory=dict, repr=False)
    labels: dict[str, dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set)), repr=False
    )

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls()
        for family in text_string_to_metric_families(text):
            scrape.families[family.name] = {sample.name for sample in family.samples}
            for sample in family.samples:
                values = scrape.labels[sample.name]
                for label, value in sample.labels.items():
                    values[label].add(value)
        return scrape

    @property
    def names(self) -> set[str]:
        return set(self.labels)


@dataclass
class Query:
    """One PromQL expression taken apart: the series it selects, with their matchers, the labels
    it groups by and the functions it calls."""

    selectors: list[tuple[str, list[tuple[str, str, str]]]]
    grouping: set[str]
    functions: set[str]


def parse_promql(expr: str) -> Query:
    """Tokenises ``expr`` (the subset of PromQL a dashboard uses) into a :class:`Query`.

    >>> q = parse_promql('sum by (label) (rate(x_total{instance=~"$i", stage="s"}[5m])) + y')
    >>> q.selectors, sorted(q.grouping), sorted(q.functions)
    ([('x_total', [('instance', '=~', '$i'), ('stage', '=', 's')]), ('y', [])], ['label'], ['rate', 'sum'])
    """
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr.rstrip()):
        match = TOKEN.match(expr, position)
        assert match is not None and match.lastgroup is not None, f"cannot read {expr[position:]!r}"
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    query = Query([], set(), set())
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in GROUPING:
            assert following == "(", f"{text} without a label list in {expr}"
            close = next(j for j in range(i + 2, len(tokens)) if tokens[j][1] == ")")
            query.grouping |= {t for k, t in tokens[i + 2 : close] if k == "ident"}
            i = close + 1
            continue
        if kind == "ident" and (following == "(" or following in GROUPING):  # sum by (x) (...) too
            assert text in FUNCTIONS, f"unknown function {text} in {expr}"
            query.functions.add(text)
        elif kind == "ident" and text not in {"bool", "and", "or", "unless", "offset"}:
            matchers = []
            if following == "{":
                close = next(j for j in range(i + 2, len(tokens)) if tokens[j][1] == "}")
                inside = [t for t in tokens[i + 2 : close] if t[1] != ","]
                for at in range(0, len(inside), 3):
                    (_, label), (_, op), (_, value) = inside[at : at + 3]
                    matchers.append((label, op, json.loads(value)))
                i = close
            query.selectors.append((text, matchers))
        else:
            assert text != "{", f"a selector without a metric name in {expr}"
        i += 1
    return query


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(panel title, target)`` for every query target of every panel (rows' panels included)."""
    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    return [(panel["title"], target) for panel in panels for target in panel.get("targets", [])]


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Scrape:
    raw = read_yaml(ROOT / "deploy" / "config" / "camera.yaml")
    raw["source"] = {"uri": "sample:bikes", "id": "camera"}
    raw["outputs"]["preview"] = {"host": "127.0.0.1", "port": 0}
    raw["max_frames"] = FRAMES
    scraped: list[str] = []

    def fetch_at_the_last_frame(p: Pipeline) -> None:
        if p.metrics.frames_out == FRAMES:
            (preview,) = [sink for sink in p.sinks if isinstance(sink, PreviewSink)]
            with urllib.request.urlopen(f"{preview.url}metrics", timeout=10) as answer:
                scraped.append(answer.read().decode())

    with pytest.MonkeyPatch.context() as patch:
        # the config's relative outputs (events.jsonl, snapshots/) are opened here, from the start
        patch.chdir(tmp_path_factory.mktemp("camera"))
        Pipeline(parse_config(raw, origin="camera.yaml on sample:bikes")).run(fetch_at_the_last_frame)
    (text,) = scraped
    return Scrape.parse(text)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_scrape_has_every_kind_of_series(scrape: Scrape) -> None:
    """The run behind the checks exercised every family, so no name below is checked against nothing."""
    for name in (
        "streamvision_latency_seconds_bucket",
        "streamvision_detections_total",
        "streamvision_events_total",
        "streamvision_event_output_failed_total",
        "streamvision_step_milliseconds",
    ):
        assert scrape.labels[name], f"{name} has no samples"


def test_every_expression_uses_only_exported_metrics_labels_and_values(
    scrape: Scrape, dashboard: dict[str, Any]
) -> None:
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 20
    for title, target in queries:
        query = parse_promql(target["expr"])
        assert query.selectors, f"{title}: {target['expr']} selects nothing"
        for metric, matchers in query.selectors:
            assert metric in scrape.names, f"{title}: {metric} is not exported"
            for label, op, value in matchers:
                assert label in {*scrape.labels[metric], *TARGET_LABELS}, f"{title}: {metric} has no {label}"
                if op == "=" and "$" not in value:
                    assert value in scrape.labels[metric][label], f"{title}: {metric}{{{label}={value!r}}}"
        known = set(TARGET_LABELS).union(*(scrape.labels[m] for m, _ in query.selectors))
        assert query.grouping <= known, f"{title}: groups by {query.grouping - known}"
        # a legend names labels the result still has: those grouped by, or the series' own
        shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        kept = (
            query.grouping - {"le"} if "histogram_quantile" in query.functions else query.grouping
        ) or known
        assert shown <= kept, f"{title}: legend {target['legendFormat']!r} names {shown - kept}"


def test_every_exported_family_has_a_panel(scrape: Scrape, dashboard: dict[str, Any]) -> None:
    used = {
        metric for _, t in dashboard_queries(dashboard) for metric, _ in parse_promql(t["expr"]).selectors
    }
    missing = [
        family
        for family, samples in scrape.families.items()
        if not family.endswith("_created") and not samples & used
    ]
    assert not missing, f"no panel shows {missing}"


def test_variables_and_data_sources_resolve(scrape: Scrape, dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for variable in variables.values():
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"])
            assert found is not None, variable["query"]
            metric, label = found.groups()
            assert metric in scrape.names and label in {*scrape.labels[metric], *TARGET_LABELS}
    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(
            t["datasource"] == panel["datasource"] for t in panel["targets"]
        )
        used = set(re.findall(r"\$(\w+)", " ".join(t["expr"] for t in panel["targets"])))
        assert used <= {*variables, "__rate_interval", "__interval", "__range"}, panel["title"]
