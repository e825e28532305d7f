"""Data sources shared by the model build, the local tools and the evaluation (no service code)."""
