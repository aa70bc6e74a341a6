"""Guardrail policies (to come)."""
