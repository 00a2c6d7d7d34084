"""Baseline programs: what a user could write with psycopg alone. Run as scripts, never imported."""
