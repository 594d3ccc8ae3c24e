"""Testing kit for users of roger-actors (placeholder; filled below)."""
