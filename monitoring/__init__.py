"""Not built yet: see the README's status table."""
