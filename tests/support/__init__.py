"""Helpers shared by the test tiers: polling with a deadline and real processes."""
