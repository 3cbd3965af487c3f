"""Integration tests against real lab clusters (MariaDB + MHA containers)."""
