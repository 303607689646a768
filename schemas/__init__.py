"""Wire protocol and collection declarations of gridsync. Depends on nothing of ours."""

# Declares every collection, those of schemas/practices.py included, whichever is imported first.
import schemas.collections  # noqa: F401
