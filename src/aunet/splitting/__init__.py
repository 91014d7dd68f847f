"""Split rules and per-byte levels (see :mod:`aunet.splitting.rules` for the rules' exact semantics)."""

from aunet.splitting.levels import compute_levels, rule_selections
from aunet.splitting.rules import RULES, SplitRule, parse_rule, register_rule
from aunet.splitting.text import Units, decode_units

__all__ = ["RULES", "SplitRule", "Units", "compute_levels", "decode_units", "parse_rule", "register_rule",
           "rule_selections"]
