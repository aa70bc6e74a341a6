"""Model endpoints, model calls and attempts' execution (to come)."""
