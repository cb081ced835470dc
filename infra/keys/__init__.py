"""Key material of the stack: services' mesh keys and their rotation, the edge's API-key pepper, the
local development issuer's signing key."""
