"""Base models: loading, bundled offline defaults, and target-module discovery from configs."""
