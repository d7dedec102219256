// MoEServe
