"""Reliability and security scenarios against a real `batchserve serve` process."""
