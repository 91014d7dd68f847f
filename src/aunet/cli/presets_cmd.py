"""``aunet presets``: the model presets shipped with the package."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the model presets shipped with the package",
                       description="List model presets (usable wherever a model config file is expected) with their "
                                   "size.")
    p.add_argument("--json", action="store_true", help="one JSON object per preset")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aunet.flops import flops_report
    from aunet.formatting import si, table
    from aunet.models import load_model_config
    from aunet.presets import list_presets, preset_description

    rows = []
    for name in list_presets():
        report = flops_report(load_model_config(name))
        if args.json:
            print(json.dumps({"name": name, "family": report.family, "params": report.params,
                              "flops_per_unit": report.flops_per_unit, "unit": report.unit,
                              "description": preset_description(name)}))
            continue
        rows.append([name, report.family, si(report.params), f"{report.flops_per_unit:.2e}/{report.unit}",
                     preset_description(name)])
    if not args.json:
        print(table(rows, ["preset", "family", "params", "FLOPs", "description"]))
    return 0
