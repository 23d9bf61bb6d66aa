"""Delivery: pure decisions (`decisions`), the group-commit writer of outcomes
(`writer`), and the once-per-process guard of the drain (`guard`)."""
