"""genisss: operate the Genisss realtime story counter on PostgreSQL and Supabase."""

__version__ = "0.1.0"
