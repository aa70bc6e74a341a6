"""Cost reports: what an accepted ticket costs, and what the same work would cost on the cloud."""
