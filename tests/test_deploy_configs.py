"""The monitoring configuration of ``deploy/`` against what a worker really exposes.

The reference is the worker's own exposition: `agents.worker.observability.Observability` after publishing
the metrics of a `pipeline.Refiner` that learnt from real Banking77 reviews. Every PromQL expression
of the alerting rules and of the Grafana dashboard may name only series of that exposition (or
Prometheus's own ``up``), only labels those series carry and, where the worker fixes them, only
label values it uses. The files parse; when ``promtool`` is on PATH it checks the configuration,
the rules and every dashboard query, and runs the alerts' unit tests (``alerts.test.yml``).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip(
    "yaml",
    reason="PyYAML is needed to read the Prometheus, Grafana and compose files "
    "(pip install pyyaml; it belongs in the dev extras)",
)

from agents.settings import TOPICS, Settings
from agents.worker.deadletter import ERRORS

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "refinery.json"
MONITORING_DOC = DEPLOY.parent / "docs" / "monitoring.md"

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
#: What Grafana puts in place of its variables when a query is checked.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


# -- the worker's exposition ---------------------------------------------------------------------


class Exposition:
    """Series names, label names and known label values of one worker's ``/metrics``."""

    def __init__(self, text: str, labels_of_family: dict[str, tuple[str, ...]]) -> None:
        self.labels: dict[str, set[str]] = {"up": set(TARGET_LABELS)}
        self.values: dict[tuple[str, str], set[str]] = {}
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
            family = name.removesuffix("_total") if kind == "counter" else name
            names = [f"{name}_bucket", f"{name}_count", f"{name}_sum"] if kind == "histogram" else [name]
            for series in names:
                extra = {"le"} if series.endswith("_bucket") else set()
                self.labels[series] = set(labels_of_family.get(family, ())) | extra | TARGET_LABELS
        for series, body in re.findall(r"^([a-zA-Z_:][\w:]*)\{([^}]*)\}", text, flags=re.M):
            for key, value in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', body):
                self.values.setdefault((series, key), set()).add(value)

    def known_values(self, series: str, label: str) -> set[str] | None:
        """The values the worker gives ``label`` of ``series``, if it fixes them."""
        if label == "error":
            return set(ERRORS)
        if label == "topic":
            return {Settings().topic(name) for name in TOPICS}
        if label == "job":
            return {job["job_name"] for job in _yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]}
        if label in ("factor", "severity"):
            return self.values.get((series, label))
        return None  # dataset, label, instance, partition...: the user's data


@pytest.fixture(scope="module")
def exposition(datasets) -> Exposition:
    """``/metrics`` of a worker whose Banking77 dataset has learnt from 300 real reviews."""
    from agents.ingest import datasets as loaders
    from agents.worker.observability import Observability
    from pipeline import Refiner, RefinerConfig

    refiner = Refiner(dataset="banking77", config=RefinerConfig(validation_window=300), seed=0)
    for message, review in itertools.islice(loaders.banking77(root=datasets), 300):
        refiner.observe(message)
        refiner.annotate(review)
    observability = Observability()
    observability.publish(refiner.metrics(now=0))
    families = {
        c._name: tuple(c._labelnames)
        for c in vars(observability).values()
        if hasattr(c, "_labelnames") and hasattr(c, "_name")
    }
    return Exposition(observability.exposition().decode("utf-8"), families)


# -- reading PromQL ------------------------------------------------------------------------------

_STRING = r'"(?:[^"\\]|\\.)*"'
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*(" + _STRING + ")")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def problems(expr: str, exposition: Exposition) -> list[str]:
    """What in ``expr`` the worker does not expose: unknown series, labels or label values."""
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", expr, flags=re.S)
    if label_values:  # a Grafana variable query: label_values(selector, label)
        expr, wanted = label_values.groups()
        found = problems(expr, exposition)
        for name in _series(expr):
            if wanted not in exposition.labels.get(name, set()):
                found.append(f"{name} has no label {wanted!r}")
        return found
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    found = []
    for name in _series(expr):
        if name not in exposition.labels:
            found.append(f"unknown series {name!r}")
    for name, body in _SELECTOR.findall(expr):
        for label, op, quoted in _MATCHER.findall(body):
            value = json.loads(quoted)
            if name and name in exposition.labels and label not in exposition.labels[name]:
                found.append(f"{name} has no label {label!r}")
                continue
            known = exposition.known_values(name, label) if name else None
            if known is None or "$" in value or op.startswith("!"):
                continue
            if op == "=" and value not in known:
                found.append(f"{name}{{{label}={value!r}}}: the worker uses {sorted(known)}")
            if op == "=~" and not any(re.fullmatch(value, v) for v in known):
                found.append(f"{name}{{{label}=~{value!r}}} matches none of {sorted(known)}")
    return found


def _series(expr: str) -> list[str]:
    """The series names ``expr`` selects (functions, keywords and grouping labels left out)."""
    bare = re.sub(_STRING, '""', expr)
    bare = re.sub(r"\{[^}]*\}", " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = _GROUPING.sub(" ", bare)
    names = []
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", bare):
        name, call = match.groups()
        if not call and name.lower() not in _KEYWORDS:
            names.append(name)
    return names


# -- the files -----------------------------------------------------------------------------------


def _yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts() -> list[dict]:
    return [rule for group in _yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]]


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels of collapsed rows
    return out


def _panel_queries() -> list[tuple[str, str]]:
    return [(f"{p['title']} [{t['refId']}]", t["expr"]) for p in _panels(_dashboard()) for t in p.get("targets", [])]


def _dashboard_queries() -> list[tuple[str, str]]:
    """Every query of the dashboard: its panels' and its variables'."""
    return _panel_queries() + [
        (f"variable {v['name']}", v["definition"]) for v in _dashboard()["templating"]["list"] if v["type"] == "query"
    ]


def _reported(exposition: Exposition) -> set[str]:
    """The worker's series, without the ``_created`` timestamps prometheus_client adds to counters."""
    return {name for name in exposition.labels if not name.endswith("_created")}


# -- the checker itself ---------------------------------------------------------------------------


def test_a_misspelt_metric_is_reported(exposition):
    assert problems("rate(refinery_dead_letter_total[5m])", exposition) == [
        "unknown series 'refinery_dead_letter_total'"
    ]


def test_a_label_the_metric_does_not_carry_is_reported(exposition):
    assert problems('refinery_dataset_rating{label="x"}', exposition) == [
        "refinery_dataset_rating has no label 'label'"
    ]


def test_a_label_value_the_worker_never_uses_is_reported(exposition):
    assert problems('refinery_dead_letters_total{error="parse"}', exposition) == [
        f"refinery_dead_letters_total{{error='parse'}}: the worker uses {sorted(ERRORS)}"
    ]


def test_functions_grouping_labels_and_grafana_variables_are_not_taken_for_metrics(exposition):
    expr = (
        "histogram_quantile(0.99, sum by (le, instance) (rate(refinery_processing_seconds_bucket"
        '{instance=~"$instance"}[$__rate_interval]))) > bool 5'
    )
    assert _series(expr.replace("$__rate_interval", "1m")) == ["refinery_processing_seconds_bucket"]
    assert problems(expr, exposition) == []


# -- Prometheus -----------------------------------------------------------------------------------


def test_prometheus_scrapes_the_worker_at_its_default_address():
    config = _yaml(PROMETHEUS / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "refinery"]
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert f"{Settings().web_host}:{Settings().web_port}" in targets


def test_prometheus_loads_the_alerting_rules():
    config = _yaml(PROMETHEUS / "prometheus.yml")
    assert [(PROMETHEUS / f).is_file() for f in config["rule_files"]] == [True]


def test_every_alert_says_what_happened_and_how_bad():
    for rule in _alerts():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_alerts_cover_what_users_watch():
    expressions = {rule["alert"]: rule["expr"] for rule in _alerts()}
    watched = [
        "up",
        "refinery_dataset_rating",
        "refinery_dataset_rating_factor",
        "refinery_label_warnings",
        "refinery_label_precision",
        "refinery_label_recall",
        "refinery_dead_letters_total",
        "refinery_consumer_lag",
    ]
    missing = [name for name in watched if not any(name in _series(e) for e in expressions.values())]
    assert missing == []


@pytest.mark.parametrize("rule", _alerts(), ids=lambda rule: rule["alert"])
def test_alert_uses_only_series_the_worker_exposes(rule, exposition):
    assert problems(rule["expr"], exposition) == []


# -- Grafana --------------------------------------------------------------------------------------


@pytest.mark.parametrize("title, expr", _dashboard_queries(), ids=[q[0] for q in _dashboard_queries()])
def test_dashboard_query_uses_only_series_the_worker_exposes(title, expr, exposition):
    assert problems(expr, exposition) == []


def test_dashboard_is_a_grafana_dashboard_chosen_by_dataset():
    dashboard = _dashboard()
    assert (dashboard["uid"], dashboard["title"]) == ("refinery", "Refinery")
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["dataset"]["definition"] == "label_values(refinery_dataset_rating, dataset)"
    assert variables["datasource"]["query"] == "prometheus"


def test_dashboard_panels_are_laid_out_on_the_grid_with_unique_ids():
    panels = _panels(_dashboard())
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, p["title"]


def test_every_dashboard_query_uses_the_chosen_datasource():
    for p in _panels(_dashboard()):
        for t in p.get("targets", []):
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]


def test_every_dataset_panel_follows_the_dataset_variable():
    for title, expr in _panel_queries():
        if any(name.startswith(("refinery_dataset_", "refinery_label_")) for name in _series(expr)):
            assert 'dataset="$dataset"' in expr, title


def test_dashboard_shows_every_metric_the_worker_exposes(exposition):
    shown = {name for _, expr in _dashboard_queries() for name in _series(expr.replace("$__range", "1h"))}
    # Bookkeeping the dashboard leaves to the JSON API and the logs.
    elsewhere = {
        "refinery_snapshot_bytes",
        "refinery_restores_total",
        "refinery_processing_seconds_count",
        "refinery_processing_seconds_sum",
    }
    assert sorted(_reported(exposition) - shown - elsewhere) == []


def test_grafana_provisioning_points_at_the_prometheus_and_dashboards_of_the_compose_file():
    compose = _yaml(DEPLOY / "compose.yaml")
    (datasource,) = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    listen = next(a for a in compose["services"]["prometheus"]["command"] if a.startswith("--web.listen-address="))
    assert datasource["url"] == f"http://{listen.split('=', 1)[1]}"
    (provider,) = _yaml(GRAFANA / "provisioning" / "dashboards" / "refinery.yml")["providers"]
    source_of = {}  # container path -> host path, of the bind mounts
    for volume in compose["services"]["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        source_of[target] = source
    assert (DEPLOY / source_of[provider["options"]["path"]] / DASHBOARD.name).is_file()


def test_compose_mounts_only_files_that_exist_and_runs_prometheus_on_them():
    compose = _yaml(DEPLOY / "compose.yaml")
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose["services"]["prometheus"]["command"]
    assert "./prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]


def test_every_metric_is_documented(exposition):
    doc = MONITORING_DOC.read_text(encoding="utf-8")
    families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in _reported(exposition) - {"up"}}
    assert sorted(n for n in families if f"`{n}" not in doc) == []


def test_every_alert_is_documented():
    doc = MONITORING_DOC.read_text(encoding="utf-8")
    assert [r["alert"] for r in _alerts() if r["alert"] not in doc] == []


# -- promtool ------------------------------------------------------------------------------------

promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not on PATH (Debian: apt-get install prometheus)"
)


def _promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@promtool
def test_promtool_accepts_the_prometheus_configuration_and_rules():
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_promtool_unit_tests_of_the_alerts_pass():
    result = _promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    rules = []
    for i, (title, expr) in enumerate(_dashboard_queries()):
        if expr.startswith("label_values("):
            expr = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr).group(1)
        for variable, value in {
            **GRAFANA_VARIABLES,
            "$dataset": "banking77",
            "$label": ".*",
            "$instance": ".*",
        }.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", "dashboard.rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
