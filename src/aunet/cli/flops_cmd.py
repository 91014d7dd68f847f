"""``aunet flops CONFIG``: parameters, training FLOPs per byte or token, and the output head's share."""

from __future__ import annotations

import argparse
import json

from aunet.formatting import si, table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="parameters and training FLOPs per input unit of a model config",
                       description="Print parameters and training FLOPs per input unit (byte for AU-Net, token for "
                                   "BPE) with the paper's accounting: 6*N + attention per stage, encoder and decoder "
                                   "counted, stages scaled by their caps, output head included. CONFIG is a YAML "
                                   "file with a 'model:' section or a preset name (see 'aunet presets').")
    p.add_argument("config", metavar="CONFIG", help="YAML file with a 'model:' section, or a preset name")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run)


def _percent(share: float) -> str:
    """Three significant digits, so a head share of 0.05% does not print as 0.0%."""
    return f"{share * 100:.3g}%"


def run(args: argparse.Namespace) -> int:
    from aunet.flops import flops_report
    from aunet.models import family_of, load_model_config

    config = load_model_config(args.config)
    report = flops_report(config)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    unit = report.unit
    print(f"{args.config}  ({family_of(config).title}; FLOPs counted per {unit})")
    print(f"  parameters       {si(report.params)}  (non-embedding {si(report.non_embedding_params)}, "
          f"embedding {si(report.embedding_params)}, head {si(report.head_params)})")
    print(f"  FLOPs per {unit:<5}  {report.flops_per_unit:.3e}  (head {_percent(report.head_share)}, "
          f"attention {_percent(report.attention_flops_per_unit / report.flops_per_unit)})")
    print(f"  FLOPs per sequence of {report.seq_len} {unit}s: {report.flops_per_sequence():.3e}")
    rows = [[str(s.stage), str(s.dim), str(s.ffn_dim), f"{s.seq_len:g}", f"{s.ratio:.4g}", str(s.layers_counted),
             f"{s.window_fraction:.3g}", f"{s.linear_flops:.3e}", f"{s.attention_flops:.3e}"] for s in report.stages]
    header = ["stage", "width", "ffn", "length", f"per {unit}", "layers", "window", "linear", "attention"]
    print()
    print("\n".join("  " + line for line in table(rows, header).splitlines()))
    print(f"  head: {report.head_flops_per_unit:.3e} per {unit}")
    if report.transition_params:
        print(f"  pooling/upsampling (not counted, as in the paper): {report.transition_flops_per_unit:.3e} per "
              f"{unit}, {si(report.transition_params)} parameters")
    if report.routing_flops_per_unit:
        print(f"  routing, EMA, ratio loss (counted): {report.routing_flops_per_unit:.3e} per {unit}; lengths are "
              "planned at the target ratios (training charges the realized ones)")
    return 0
