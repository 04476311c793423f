"""GDX: deployment and operations bundle for a government data sharing and exchange platform."""

__version__ = "0.1.0"
