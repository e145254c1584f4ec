"""What every floor above the kernels shares, with nothing above it: the errors a user can
fix (`errors`), the one style in which a config field is checked and named
(`field_checks`), and the user cache folder (`user_cache`).

Imports: the standard library only (and numpy/ml_collections for field values).
"""
