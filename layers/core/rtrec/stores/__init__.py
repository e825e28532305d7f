"""Data access: one small module per AWS store, each taking its boto3 client or table by injection."""
