"""Wire protocol and collection declarations of gridsync. Depends on nothing of ours."""
