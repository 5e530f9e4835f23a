"""Helpers shared by the unit and machine tests (importable as `support`: pyproject.toml
puts tests/ on the path)."""
