"""Accounts: users, enterprises, roles, sessions, API tokens, qualifications."""
