"""The plan: pure data. ``build_plan(group, options)`` does no I/O.

A plan is an immutable sequence of steps, and the complete list of what a run will do. Each
step has three parts: gates checked before it acts, its actions (every command and statement
it may send, typed, each with the gates that prove it), and gates checked after; plus the
cleanup it runs at its end whatever happened (each conditional). The executor only carries
these out: ``harestart plan`` prints every state-changing command or statement a run may issue.

Safety rules the planner guarantees (unit-tested as properties):
- preflight first, the failover manager is stopped before any mysqld restart;
- every replica is restarted before the source, every database node exactly once;
- the failover manager is started again after the last restart, then a final verification.

Modules: ``model`` (the plan's types), ``build`` (``build_plan``: the planner),
``switchover`` (the switchover strategy's steps). ``harestart.views.plan`` renders plans."""
