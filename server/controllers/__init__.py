"""HTTP controllers: thin, they negotiate, authorise and hand over to the store."""
