"""Views: what people read (terminal progress, the status table), built from engine results."""
