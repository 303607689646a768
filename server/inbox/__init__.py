"""The conflict inbox: conflicts recorded by the push, listed, shown and resolved."""
