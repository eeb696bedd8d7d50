"""ffray: distributed video face-swap on Ray with per-chunk GPU attribution."""

__version__ = "0.1.0"
