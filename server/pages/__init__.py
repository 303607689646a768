"""The admin web pages under /admin: templates, labels in two languages."""
