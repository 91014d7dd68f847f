"""The one YAML loader of the suite: every config file, preset, sweep file and command-line YAML value goes here.

It is PyYAML's ``SafeLoader`` (no tag builds a Python object) with three refusals that plain ``safe_load`` lacks,
each a one-line :class:`~aunet.errors.ConfigError`:

- **duplicate keys** in a mapping, naming both lines: PyYAML keeps the last one silently, so a second ``train:``
  block would replace the first without a word; two merge keys ``<<:`` in one mapping likewise;
- **alias bombs**: anchors and aliases are shared in memory, but anything that walks the value (validation, an
  error message, a fingerprint) walks every reference. The composed node graph is measured before anything is
  constructed, and a document whose aliases expand to more than :data:`MAX_VALUES` values, or that refers to
  itself, is refused; a 500-byte bomb ends in milliseconds;
- **nesting** deeper than the parser's recursion can follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from aunet.errors import ConfigError, excerpt

# Values (scalars, lists, mappings) a document may hold once its aliases are expanded. The largest config of the
# suite (a sweep with a ladder of presets) has a few thousand; a bomb has astronomically many.
MAX_VALUES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` refusing duplicate keys (merge keys ``<<:`` still supply defaults that explicit keys override)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            merge_line: int | None = None
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    line = key_node.start_mark.line + 1
                    if merge_line is not None:  # PyYAML keeps the last merge silently, dropping the first's keys
                        raise ConfigError("", f"line {line}: a second merge key '<<' in one mapping (first at line "
                                              f"{merge_line}); merge both in one: <<: [*first, *second]")
                    merge_line = line
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                    seen.setdefault(key, line)
                except TypeError:  # an unhashable key: SafeLoader's own error says so below
                    continue
                if first is not None:
                    raise ConfigError("", f"line {line}: duplicate key {excerpt(key)} (first at line {first}); keep "
                                          "one of them (YAML would silently take the last)")
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node) -> int:
    """How many values the document holds with every alias expanded (memoised per node: linear in the file).

    Raises ConfigError for a node that contains itself (an alias to an enclosing anchor: infinite expansion)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError("", f"line {node.start_mark.line + 1}: an alias refers to a value that contains it "
                                  "(infinite expansion); write the value out")
        open_nodes.add(key)
        if isinstance(node, SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            assert isinstance(node, ScalarNode)
            total = 1
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document; every refusal is a one-line ConfigError attributed to ``source`` (a file name or
    the option the text came from, e.g. ``--set train.lr``)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        total = _expanded_size(node)
        if total > MAX_VALUES:
            raise ConfigError("", f"aliases expand to {total:.3g} values (more than {MAX_VALUES}); write the values "
                                  "out or nest fewer aliases")
        return loader.construct_document(node)
    except ConfigError as exc:
        raise exc.with_source(source) from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"not valid YAML ({_first_line(exc)}); fix the syntax", source) from None
    except RecursionError:
        raise ConfigError("", "nested too deeply to read; flatten the value", source) from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path) -> Any:
    """Parse a YAML file with :func:`parse_yaml`; a missing, unreadable or non-UTF-8 file is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        what = "not a regular file" if p.exists() else "no such file"
        raise ConfigError("", f"{what}; give the path of a YAML config or a preset name", str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not valid YAML (not UTF-8 at byte {exc.start}); save it as UTF-8", str(p)) from None
    except OSError as exc:
        detail = exc.strerror or type(exc).__name__
        raise ConfigError("", f"cannot read ({detail}); check permissions", str(p)) from None
    return parse_yaml(text, str(p))


def _first_line(exc: yaml.YAMLError) -> str:
    """A short description of a YAML syntax error with its line (PyYAML's message spans several lines)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return excerpt(f"{problem} at line {mark.line + 1}, column {mark.column + 1}", 120, quote=False)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return excerpt(text, 120, quote=False)
