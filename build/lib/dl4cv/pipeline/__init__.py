"""What each DVC stage does, callable (and testable) without DVC; stages/*.py are the doors."""
