"""Reports: terminal summary, JSON and CSV, all from an ``Analysis``."""
