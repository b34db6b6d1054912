"""The garment taxonomy: a tree whose leaves are the model's classes.

The tree lives in ``taxonomy.yaml`` (data, not code) so that adding a class never needs a code
change. Loading validates it and fails with a message naming the offending node or label: a
taxonomy that silently mis-maps a label would train a silently wrong model.

Arrays computed here (``leaf_matrix``, ``rewards``) are what the hedger works on: node
probabilities are ``leaf_probs @ leaf_matrix.T``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

__all__ = ["Node", "Taxonomy", "TaxonomyError", "load_taxonomy", "DEFAULT_TAXONOMY_PATH"]

DEFAULT_TAXONOMY_PATH = Path(__file__).with_name("taxonomy.yaml")


class TaxonomyError(ValueError):
    """The taxonomy file is malformed or inconsistent with the dataset labels."""


@dataclass
class Node:
    """One node of the tree. ``name`` is the dotted path from the root (the root's is '')."""

    name: str
    display: str
    icon: str
    parent: str | None
    depth: int
    labels: tuple[str, ...] = ()
    children: list[str] = field(default_factory=list)

    @property
    def is_leaf(self) -> bool:
        return not self.children


class Taxonomy:
    """A validated taxonomy. Node index order: depth-first as in the file; the root is index 0."""

    def __init__(self, raw: dict, source: str = "<dict>") -> None:
        self.source = source
        if not isinstance(raw, dict) or "root" not in raw:
            raise TaxonomyError(f"{source}: expected a mapping with a 'root' node")
        self.raw = raw  # as loaded: model cards carry it (ModelCard.taxonomy)
        self.version: str = str(raw.get("version", "unversioned"))
        self.ignored_labels: tuple[str, ...] = tuple(raw.get("ignored_labels", []))
        self.nodes: dict[str, Node] = {}
        self._add(raw["root"], parent=None, prefix="", depth=0)
        self.root = self.nodes[""]
        self.node_names: list[str] = list(self.nodes)
        self.leaves: list[str] = [n for n, node in self.nodes.items() if node.is_leaf]
        if len(self.leaves) < 2:
            raise TaxonomyError(f"{source}: a taxonomy needs at least two leaves")
        self.label_to_leaf: dict[str, str] = {}
        for leaf in self.leaves:
            node = self.nodes[leaf]
            if not node.labels:
                raise TaxonomyError(f"{source}: leaf '{leaf}' has no dataset labels")
            for label in node.labels:
                if label in self.label_to_leaf:
                    raise TaxonomyError(
                        f"{source}: dataset label '{label}' maps to two leaves: "
                        f"'{self.label_to_leaf[label]}' and '{leaf}'"
                    )
                if label in self.ignored_labels:
                    raise TaxonomyError(f"{source}: label '{label}' is both ignored and a class")
                self.label_to_leaf[label] = leaf

    def _add(self, raw: dict, parent: str | None, prefix: str, depth: int) -> None:
        where = prefix or "root"
        if not isinstance(raw, dict):
            raise TaxonomyError(f"{self.source}: node under '{where}' is not a mapping")
        for key in ("name", "display", "icon"):
            if not raw.get(key) or not isinstance(raw[key], str):
                raise TaxonomyError(f"{self.source}: node under '{where}' lacks a '{key}'")
        short = raw["name"]
        if "." in short:
            raise TaxonomyError(f"{self.source}: node name '{short}' must not contain '.'")
        name = "" if parent is None else (f"{prefix}.{short}" if prefix else short)
        if name in self.nodes:
            raise TaxonomyError(f"{self.source}: duplicate node name '{name}'")
        children = raw.get("children") or []
        labels = tuple(raw.get("labels") or [])
        if children and labels:
            raise TaxonomyError(f"{self.source}: inner node '{name}' must not carry labels")
        self.nodes[name] = Node(name, raw["display"], raw["icon"], parent, depth, labels)
        if parent is not None:
            self.nodes[parent].children.append(name)
        for child in children:
            self._add(child, parent=name, prefix=name, depth=depth + 1)

    # --- lookups -------------------------------------------------------------------------
    def leaf_for_label(self, label: str) -> str | None:
        """The leaf a dataset label means; None for ignored labels; TaxonomyError if unknown."""
        if label in self.ignored_labels:
            return None
        try:
            return self.label_to_leaf[label]
        except KeyError:
            raise TaxonomyError(f"unknown dataset label '{label}' (not in {self.source})") from None

    def ancestors(self, name: str) -> list[str]:
        """Path from ``name`` up to the root, both included: [name, parent, ..., '']."""
        path = [name]
        while (parent := self.nodes[path[-1]].parent) is not None:
            path.append(parent)
        return path

    def leaves_under(self, name: str) -> list[str]:
        return [leaf for leaf in self.leaves if leaf == name or name == "" or leaf.startswith(name + ".")]

    # --- arrays for the hedger ------------------------------------------------------------
    @cached_property
    def leaf_matrix(self) -> np.ndarray:
        """(n_nodes, n_leaves) 0/1 matrix: row i marks the leaves under node i."""
        leaf_index = {leaf: j for j, leaf in enumerate(self.leaves)}
        m = np.zeros((len(self.node_names), len(self.leaves)), dtype=np.float64)
        for i, name in enumerate(self.node_names):
            for leaf in self.leaves_under(name):
                m[i, leaf_index[leaf]] = 1.0
        return m

    @cached_property
    def info_gain(self) -> np.ndarray:
        """Reward per node (DARTS): log2(#leaves) - log2(#leaves under the node), in bits."""
        counts = self.leaf_matrix.sum(axis=1)
        return math.log2(len(self.leaves)) - np.log2(counts)

    @cached_property
    def digest(self) -> str:
        """A short hash of the tree's structure, recorded in model cards to catch mismatches."""
        text = "\n".join(f"{n}|{','.join(self.nodes[n].labels)}" for n in self.node_names)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy YAML file (the bundled one by default)."""
    path = Path(path) if path else DEFAULT_TAXONOMY_PATH
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TaxonomyError(f"cannot read taxonomy {path}: {exc}") from exc
    return Taxonomy(raw, source=str(path))
