"""Pure rules: one module per family. Each takes a snapshot, the moment and the policy."""
