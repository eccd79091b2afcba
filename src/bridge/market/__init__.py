"""Market layer: calendars, per-market trading rules, bar loading and validation."""
