// MoEFormat
