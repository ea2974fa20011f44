"""Run every query of the Refinery dashboard against a live Prometheus and say which return nothing.

Use it when a panel stays empty: it tells a query Prometheus rejects from one that has no data yet
(no worker scraped, no dataset published, no dead letter so far). Standard library only.

    python deploy/grafana/check_dashboard.py                                   # Prometheus on 127.0.0.1:9090
    python deploy/grafana/check_dashboard.py --prometheus http://127.0.0.1:9090 --dataset banking77

Exit status: 0 if every query is accepted, 1 if Prometheus rejects one, 2 if Prometheus cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "refinery.json"


def query(prometheus: str, expr: str) -> list:
    """The instant-query result of ``expr``; raises ValueError with Prometheus's message if rejected."""
    url = f"{prometheus.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]["result"]
    except urllib.error.HTTPError as error:
        raise ValueError(json.load(error).get("error", str(error))) from None


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """``(where, expr)`` of every panel target and query variable (``label_values`` reduced to its selector)."""
    out = []
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["definition"])
            out.append((f"variable {v['name']}", match.group(1) if match else v["definition"]))
    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    for p in panels:
        for t in p.get("targets", []):
            out.append((f"{p['title']} [{t['refId']}]", t["expr"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--dataset", default=None, help="dataset to check (default: the first one Prometheus knows)")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD, help="dashboard JSON")
    args = parser.parse_args(argv)
    try:
        datasets = sorted({s["metric"]["dataset"] for s in query(args.prometheus, "refinery_dataset_rating")})
    except (urllib.error.URLError, OSError) as error:
        print(f"cannot reach Prometheus at {args.prometheus}: {error}", file=sys.stderr)
        return 2
    dataset = args.dataset or (datasets[0] if datasets else "")
    print(f"dataset: {dataset or '(none published yet)'}; known: {', '.join(datasets) or 'none'}")
    variables = {
        "$__rate_interval": "1m",
        "$__interval": "1m",
        "$__range": "1h",
        "$dataset": dataset,
        "$label": ".*",
        "$instance": ".*",
    }
    rejected = 0
    for where, expr in queries(json.loads(args.dashboard.read_text(encoding="utf-8"))):
        for name, value in variables.items():
            expr = expr.replace(name, value)
        try:
            n = len(query(args.prometheus, expr))
            print(f"{n:6d} series  {where}" + ("" if n else "   <- no data"))
        except ValueError as error:
            rejected += 1
            print(f"  REJECTED     {where}: {error}")
    return 1 if rejected else 0


if __name__ == "__main__":
    sys.exit(main())
