"""Evaluations of the whole service: the streaming replay runs the real handlers through infra.local."""
