"""The suite bench/run.sh runs: w2v against transformers and the deployment runtimes (RATIO lines)."""
