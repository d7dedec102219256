// MoEConvert
