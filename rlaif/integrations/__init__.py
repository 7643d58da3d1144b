"""Adapters between rlaif's rewards/data and other RL engines (TRL, OpenRLHF, verl, Ray Data).

Each module speaks one engine's interface exactly (field names, types, signatures read from that engine's
code) and keeps engine-specific details out of the rest of rlaif. The engines themselves are never imported
here at module level: each is an optional dependency of the user's own stack.
"""
