"""Infrastructure helpers that run the service without AWS (see infra/local)."""
