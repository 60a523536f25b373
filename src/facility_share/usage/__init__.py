"""Usage: what really happened (append-only logs from managers, users and instrument agents),
the charges it costs, the users' ratings, and the sharing figures built on them."""
