"""Fuzzing harnesses (atheris) for what tlsresume reads from outside: key files,
client cache files, and the ring and store regions other processes write."""
