"""Verification: judge nccl-tests and burn-in results, localize faults, report."""
