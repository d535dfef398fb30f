"""The servers the benchmark compares; see `bench.contenders.specs`."""
