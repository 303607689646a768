"""Who calls and what they may touch: principals, tokens, accounts, places, policy, rate limits."""
