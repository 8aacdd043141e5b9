"""Exact OT: column generation over a network simplex, with its certificate."""
