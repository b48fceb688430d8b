"""The scheduler: one per deployment. It turns timestamps in Postgres into short-lived messages."""
