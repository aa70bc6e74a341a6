"""The Tech Lead: the cloud model (Claude) that decomposes requirements, audits and solves.

See docs/tech-lead.md. Everything reaches the Anthropic API through `client.TechLeadClient`.
"""
