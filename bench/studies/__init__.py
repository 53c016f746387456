"""One-off studies: each answers one question, its numbers quoted in docs/benchmarks.md."""
