"""Running a plan: the executor goes step after step (``executor``, ``steps``, ``batches``),
with what the run shares (``scope``, ``memory``), its waits (``waits`` on ``waiting``'s
``poll_until``), its safe stop points (``interrupts``) and what happens after a failure
(``policy``). What each action and gate does lives in ``engine.ops``."""
