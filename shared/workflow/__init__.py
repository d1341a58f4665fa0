"""Approval workflows: `schema` (the file format), `matching` (which workflow decides for a
model), `loading` (YAML, CEL, groups; I/O), `documents` (the texts a policy digest is of: the
workflow file and groups.yaml, bounded), `conditions` (CEL, compiled with cel-python), `watch`
(changes apply at restart; a running service says when the folder changed)."""
