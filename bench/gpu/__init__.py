"""The GPU harness: bench/gpu/gpu.sh (python -m bench.gpu) on a lent GPU machine, a dry run on a CPU."""
