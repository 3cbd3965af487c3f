"""harestart: restart a MySQL/MariaDB HA group (source + replicas, watched by MHA) safely."""

__version__ = "0.1.0"
