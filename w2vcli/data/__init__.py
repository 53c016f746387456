"""Data preparation and manifests: `w2v prepare` sources write JSONL manifests that training reads."""
