// MoERuntime
