"""Where accepted work goes: integration branches, HAAO's commit store, the team's forge.

See docs/workspaces.md ("Delivery") for the model: the team's remote plus HAAO's database
are the system of record; a worker's repository is a cache any worker can rebuild.
"""
