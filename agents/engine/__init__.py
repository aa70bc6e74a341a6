"""HAAO's engine: the loop of DESIGN.md run as Celery tasks (agents.tasks).

`steps` holds one function per task; `routing` picks queues, endpoints and slots; `enqueue`
sends tasks (after commit); `hooks` ties ticket state changes to the next step; `recovery`
finds work whose worker or message was lost.
"""
