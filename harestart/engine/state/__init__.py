"""What a run keeps on this bastion's disk: the checked state directory (``private``), the
files' names (``names``), the group's lock file (``lock``) and its journal (``journal``,
written step by step by ``record``)."""
