"""The operations a run performs, one module per operation, each with its actions' performers
and its gates' evaluators: ``mha``, ``restart``, ``preflush``, ``detach``, ``switchover``,
``hooks``. ``registry`` looks them up by type; ``base`` is what they share."""
