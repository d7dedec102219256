// MoETokenizer
