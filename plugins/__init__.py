"""Built-in methods, one module per paper (numbering of shared/specs/papers.md). Each module
exports Method objects listed in the ``feedbackkit.plugins`` entry-point table of pyproject.toml."""
