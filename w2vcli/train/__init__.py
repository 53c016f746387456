"""One training engine for `w2v pretrain` and `w2v finetune` (see engine.py)."""
